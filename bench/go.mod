module tally/bench

go 1.26.6

toolchain go1.26.10

require (
	github.com/redis/go-redis/v9 v9.23.0
	tally/testkit v0.0.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

replace tally/testkit => ../testkit
