// Package certs makes and keeps the certificates tally's edge serves.
//
// Local: a certificate authority of the stack's own, made once, and a
// certificate for this machine's local names signed by it, renewed when a
// third of its life is left (EnsureLocal). The authority is name-constrained
// to those names, so trusting it in a browser lets it vouch for nothing
// else.
package certs
