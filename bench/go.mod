module tally/bench

go 1.26.6

toolchain go1.26.10

require tally/testkit v0.0.0

replace tally/testkit => ../testkit
