// Package testkit holds what the end-to-end suite and the deployment test
// share: a client that counts visits and tallies the answers, free
// ports, the images a Docker host here can run, and the rule that a test
// missing a tool skips on a laptop but fails under CI=true.
package testkit
