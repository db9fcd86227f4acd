module tally/testkit

go 1.26.6

toolchain go1.26.10
