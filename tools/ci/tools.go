//go:build tools

// Package tools pins the checkers' modules so go mod tidy keeps them.
package tools

import (
	_ "github.com/rhysd/actionlint/cmd/actionlint"
	_ "golang.org/x/vuln/cmd/govulncheck"
	_ "golang.org/x/vulndb/cmd/indexdb"
)
