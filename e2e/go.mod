module tally/e2e

go 1.26.0

toolchain go1.26.10

require tally/testkit v0.0.0

replace tally/testkit => ../testkit
