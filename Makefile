# tally: every command a user or CI runs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# go.work names the toolchain (its stdlib fixes matter); fetch it when the
# local Go is older, even where the installation defaults to GOTOOLCHAIN=local.
export GOTOOLCHAIN ?= auto

# Every module in go.work, as package patterns (./app/... ./infra/...).
PKGS := $(shell go list -m -f '{{.Dir}}/...' 2>/dev/null)
BIN := $(CURDIR)/bin
SCRIPTS := .ci/run scripts/rollout.sh scripts/backup.sh scripts/failover.sh redis/backup.sh redis/failover.sh nginx/serve.sh nginx/release.sh scripts/up.sh scripts/setup.sh offline/build.sh redis/start.sh redis/replica.sh redis/sentinel.sh redis/password.sh infra/pulumi.sh lab/lab.sh $(wildcard .github/scripts/*.sh)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## run the app on :8080 against REDIS_ADDR (default localhost:6379)
	cd app && go run -ldflags "-X main.version=$(VERSION)" ./cmd/tally

.PHONY: setup
setup: ## install what the tests need (as root, on Debian; quick when it is all there); as another user, say what is missing
	@bash scripts/setup.sh

.PHONY: test
# Test binaries are built first, in parallel; then the packages run one at a
# time, so the suites that load a stack (the app's integration tests, the
# end-to-end suite, the deployment test) never share the two cores with each
# other or with the compiler: a 3,000-request burst sharing them timed out.
# infra's deployment tests take about 45 minutes, nearly an hour on a machine
# that first builds the lab's current engine (the workflow caches it): a
# package may take 80 minutes.
test: setup lint ## every test in the workspace, then govulncheck (make setup first installs what they need)
	go test -race -count=1 -run '^$$' $(PKGS) >/dev/null
	go test -race -count=1 -p 1 -timeout 80m $(PKGS)
	@$(MAKE) -s vuln

.PHONY: lint
lint: $(BIN)/actionlint ## gofmt check, go vet, actionlint on the workflows, shellcheck
	@out=$$(gofmt -l $(subst /...,,$(PKGS))); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
	$(BIN)/actionlint
	@if command -v shellcheck >/dev/null; then shellcheck -x $(SCRIPTS); \
	else echo "shellcheck not installed: skipping the shell scripts (apt-get install shellcheck)"; fi

# govulncheck reads GOVULNDB; by default a database built from the module
# that tools/ci/go.mod pins, so the scan needs no access to vuln.go.dev.
GOVULNDB ?= file://$(BIN)/vulndb
.PHONY: vuln
vuln: $(BIN)/govulncheck $(if $(filter file://%,$(GOVULNDB)),$(BIN)/vulndb/index/db.json) ## govulncheck every module
	@for dir in $(subst /...,,$(PKGS)); do \
		echo "govulncheck $${dir#$(CURDIR)/}"; \
		(cd $$dir && $(BIN)/govulncheck -db $(GOVULNDB) ./...) || exit 1; \
	done

# The checkers, at the versions tools/ci/go.mod pins, built into bin/.
CI_TOOLS := GOWORK=off go -C tools/ci
$(BIN)/actionlint: tools/ci/go.mod
	$(CI_TOOLS) build -o $@ github.com/rhysd/actionlint/cmd/actionlint
$(BIN)/govulncheck: tools/ci/go.mod
	$(CI_TOOLS) build -o $@ golang.org/x/vuln/cmd/govulncheck
$(BIN)/indexdb: tools/ci/go.mod
	$(CI_TOOLS) build -o $@ golang.org/x/vulndb/cmd/indexdb

$(BIN)/vulndb/index/db.json: $(BIN)/indexdb tools/ci/go.mod
	rm -rf $(BIN)/vulndb
	$(BIN)/indexdb -vulns "$$($(CI_TOOLS) list -m -f '{{.Dir}}' golang.org/x/vulndb)/data/osv" -out $(BIN)/vulndb

# --- Compose: the whole stack on this Docker host -------------------------
REPLICAS ?= 3
COMPOSE ?= docker compose

.PHONY: up
up: .env ## run the stack: nginx on HTTP_BIND:HTTP_PORT and HTTPS_PORT (default 127.0.0.1:5002, 5443), REPLICAS web replicas (default 3), Redis; checks the host first
	@VERSION=$(VERSION) REPLICAS=$(REPLICAS) COMPOSE="$(COMPOSE)" bash scripts/up.sh

.PHONY: down
down: ## stop and remove the stack's containers; keeps the Redis volume
	$(COMPOSE) down

.PHONY: backup
backup: ## a snapshot of the Compose stack's Redis (STACK=name: a Pulumi stack's, on DOCKER_HOST) into FILE (default backups/tally-<time>.rdb)
	@FILE="$(FILE)" STACK="$(STACK)" COMPOSE="$(COMPOSE)" bash scripts/backup.sh backup

.PHONY: restore
restore: ## load FILE (a make backup snapshot) into the stack's Redis; refused when Redis holds data, unless FORCE=1
	@FILE="$(FILE)" FORCE="$(FORCE)" STACK="$(STACK)" COMPOSE="$(COMPOSE)" bash scripts/backup.sh restore

.PHONY: failover
failover: ## move a swarm stack's Redis primary (STACK=name, DOCKER_HOST a node with a Sentinel) to a replica, no acknowledged visit lost
	@STACK="$(STACK)" bash scripts/failover.sh

.PHONY: logs
logs: ## follow the stack's logs
	$(COMPOSE) logs -f

.PHONY: ps
ps: ## list the stack's containers
	$(COMPOSE) ps

# First run: the settings from .env.example. The Redis password needs no
# file: the stack makes one on first start (redis/password.sh).
.env:
	cp .env.example .env

.PHONY: offline-images
offline-images: ## build local redis/nginx/golang images from Debian packages, for hosts that cannot pull
	@bash offline/build.sh

.PHONY: e2e
e2e: ## the end-to-end suite: the Compose stack on this Docker engine (needs docker compose v2)
	go test -count=1 -timeout 20m -v ./e2e/...

# Where the docker CLI finds plugins: for every user, or for this one.
COMPOSE_PLUGIN_DIR ?= $(if $(filter 0,$(shell id -u)),/usr/local/lib/docker/cli-plugins,$(HOME)/.docker/cli-plugins)
.PHONY: compose-plugin
compose-plugin: ## build the Docker Compose v2 CLI plugin from the Go module proxy (for machines whose packages only have Compose 1.x)
	cd tools/compose && GOWORK=off go build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$$(GOWORK=off go list -m -f '{{.Version}}' github.com/docker/compose/v2)" \
		-o $(COMPOSE_PLUGIN_DIR)/docker-compose github.com/docker/compose/v2/cmd
	docker compose version

# --- Pulumi: the stack on any Docker host (see README) ----------------------
.PHONY: deploy
deploy: ## pulumi up --refresh: deploy the stack STACK (default dev) to its Docker host
	bash infra/pulumi.sh up --yes --refresh

.PHONY: preview
preview: ## pulumi preview --diff: what deploy would change
	bash infra/pulumi.sh preview --diff

.PHONY: destroy
destroy: ## pulumi destroy: remove the stack (the Redis volume stays unless tally:retainData=false)
	bash infra/pulumi.sh destroy --yes

.PHONY: outputs
outputs: ## the stack's outputs: url, webContainers, redisVolume, networks
	bash infra/pulumi.sh stack output

# --- The lab: extra Docker engines on this machine, as remote hosts --------
.PHONY: lab-up
lab-up: ## start the lab's engines (LAB_NODES, default 2; SWARM=1: a swarm of 3 and a registry; ENGINE=current: Docker Engine 29+'s parts, built once; root); prints how to reach them as KEY=value
	@bash lab/lab.sh up

.PHONY: lab-down
lab-down: ## stop the lab and remove everything lab-up created
	@bash lab/lab.sh down

# --- Evidence: benchmarks and fault drills ---------------------------------
.PHONY: bench
bench: ## benchmark: loopback (nginx + 3 replicas + Redis vs a ceiling and a floor), as deployed (Compose; as root, Pulumi on a lab node and on its swarm), deploy times; writes bench/results.md
	cd bench && go run . -root .. -out results.md

.PHONY: rollout
rollout: ## change the running Compose stack with no failed request: a new app image, nginx's config (reload) or image (handoff); ROLLOUT=edge or web for one
	VERSION=$(VERSION) bash scripts/rollout.sh

.PHONY: testssl
testssl: ## testssl.sh on the edge of a stack deployed with a certificate (the local engine's deployment test); writes bench/testssl.md
	go test -run TestDeployToLocalEngine -count=1 -timeout 30m -v ./infra/ -args -testssl-report=$(CURDIR)/bench/testssl.md

.PHONY: drill
drill: ## fault drills under load on the Compose stack and on the lab's swarm (root); writes bench/drills.md
	go test -tags drill -run TestDrills -count=1 -timeout 30m -v ./e2e/
	go test -run TestDeployToSwarm -count=1 -timeout 30m -v ./infra/ -args -swarm-report=$(CURDIR)/bench/drills.md
