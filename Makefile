# tally: every command a user or CI runs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Every module in go.work, as package patterns (./app/... ./infra/...).
PKGS := $(shell go list -m -f '{{.Dir}}/...' 2>/dev/null)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## run the app on :8080 against REDIS_ADDR (default localhost:6379)
	cd app && go run -ldflags "-X main.version=$(VERSION)" ./cmd/tally

.PHONY: test
test: lint ## every test in the workspace (needs redis-server; see README)
	go test -race -count=1 $(PKGS)

.PHONY: lint
lint: ## gofmt check and go vet
	@out=$$(gofmt -l $(subst /...,,$(PKGS))); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
