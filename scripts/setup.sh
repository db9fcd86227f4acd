#!/usr/bin/env bash
# make setup: installs what the tests need on a Debian machine, as root, and
# starts the Docker engine; quick when everything is there. As another user
# it installs nothing: it says what is missing and the one command to run.
# .ci/run and `make test` both start with it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, by the command that shows each is there:
# redis-server: the integration tests start their own on free ports.
# debootstrap: stand-ins for the official images, for hosts that cannot
#   pull them (make offline-images).
# the shellcheck package: make lint, on the scripts and the workflows' steps.
# openssh-server, openssl, iproute2, iptables, curl: the lab (lab/lab.sh),
#   whose engines the deployment tests reach over SSH and TLS;
#   docker-registry: the lab's swarm pulls the app image from it.
# docker.io: the Docker engine, where none is installed; docker-compose:
#   Compose 1.x, which the end-to-end suite runs the original command with.
# libseccomp-dev, gcc: runc for the lab's current engine (lab/engine.env).
# testssl.sh: the deployed edge's TLS, rated.
packages=(
	redis-server:redis-server debootstrap:debootstrap shellcheck:shellcheck
	openssh-server:sshd openssl:openssl iproute2:ip iptables:iptables curl:curl
	docker-registry:docker-registry docker.io:dockerd docker-compose:docker-compose
	libseccomp-dev:/usr/include/seccomp.h gcc:gcc
	testssl.sh:testssl
)
PULUMI_TOOLS=${PULUMI_TOOLS:-../shared/tools/pulumi/install.sh}

missing=()
# Each is there when its command is on PATH (or in /usr/sbin), or its file
# (a path) exists.
for entry in "${packages[@]}"; do
	what=${entry#*:}
	[ -e "$what" ] || command -v "$what" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$what" >/dev/null 2>&1 || missing+=("${entry%%:*}")
done
engine_down() { ! docker info >/dev/null 2>&1; }
no_compose() { ! docker compose version --short 2>/dev/null | grep -q '^v\?2\.'; }
no_pulumi() { ! command -v pulumi >/dev/null || ! pulumi plugin ls 2>/dev/null | grep -qE '^docker +resource +4\.10\.0'; }

if [ "$(id -u)" != 0 ]; then
	todo=("${missing[@]}")
	engine_down && todo+=("a running Docker engine you may use")
	no_compose && todo+=("Docker Compose v2")
	no_pulumi && todo+=("pulumi with its docker provider v4.10.0")
	if ((${#todo[@]})); then
		list=$(printf '%s, ' "${todo[@]}")
		echo "make setup: missing ${list%, }; run: sudo make setup" >&2
		exit 1
	fi
	exit 0
fi

if ((${#missing[@]})); then
	echo "--- apt-get install ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The packages start a system Redis on 6379, sshd on 22 and a registry
	# on 5000 where they can; the tests need none of them (the lab runs its
	# own sshd and registry).
	for svc in redis-server ssh docker-registry; do service "$svc" stop >/dev/null 2>&1 || true; done
fi

if engine_down; then
	echo "--- starting the Docker engine"
	service docker start >/dev/null 2>&1 || (dockerd >/var/log/dockerd.log 2>&1 &)
	for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
	engine_down && { echo "make setup: the Docker engine did not start (see /var/log/dockerd.log)" >&2; exit 1; }
fi

# Debian only packages Compose 1.x: build the v2 plugin from the Go module
# proxy.
if no_compose; then
	echo "--- make compose-plugin"
	make -s compose-plugin
fi

# The deployment tests drive the real pulumi CLI, Go language host and
# docker provider plugin. Where they cannot be downloaded, the tools folder
# beside the checkout carries them (install.sh only checks when they are in).
if no_pulumi; then
	if [ -f "$PULUMI_TOOLS" ]; then
		echo "--- installing pulumi and its docker provider from $PULUMI_TOOLS"
		bash "$PULUMI_TOOLS"
	else
		echo "make setup: pulumi is missing: install it (https://www.pulumi.com/docs/install/), then: pulumi plugin install resource docker v4.10.0" >&2
		exit 1
	fi
fi
