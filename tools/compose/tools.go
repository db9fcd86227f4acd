//go:build tools

// Package tools pins the compose plugin's module so go mod tidy keeps it.
package tools

import _ "github.com/docker/compose/v2/cmd"
