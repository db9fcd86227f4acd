// Package testkit holds what the end-to-end suite, the deployment tests and
// the benchmark share: a client that counts visits and tallies the answers,
// a certificate authority of their own,
// free ports, the images a Docker host here can run, a deployable copy of
// the repository, the lab of extra engines, and the rule that a test
// missing a tool skips on a laptop but fails under CI=true.
package testkit
