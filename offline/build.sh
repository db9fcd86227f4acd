#!/usr/bin/env bash
# Builds local stand-ins for the official redis, nginx and golang images from
# Debian's packages, for hosts that cannot pull from a registry. Same majors
# as the official images, same users, same paths, so docker-compose.yml and
# the Pulumi program use them unchanged. Idempotent: skips what exists.
# Prints the settings that point Compose at them.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=offline/images.env
source ./images.env

SUITE=forky # Debian testing: Redis 8.0, nginx 1.30, Go 1.26
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

have() { docker image inspect "$1" >/dev/null 2>&1; }

# One build at a time: test suites running side by side may all ask.
exec 9>"${TMPDIR:-/tmp}/tally-offline-images.lock"
flock 9

if ! have "$OFFLINE_BASE_IMAGE"; then
	command -v debootstrap >/dev/null || { echo "offline-images: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
	rootfs=$(mktemp -d)
	trap 'rm -rf "$rootfs"' EXIT
	echo "offline-images: debootstrap $SUITE into $rootfs" >&2
	# Bookworm's debootstrap has no script named forky; sid's fits testing.
	debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" /usr/share/debootstrap/scripts/sid >"$rootfs.log" 2>&1 ||
		{ tail -20 "$rootfs.log" >&2; exit 1; }
	rm -f "$rootfs.log"
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | docker import - "$OFFLINE_BASE_IMAGE" >/dev/null
fi

build() { # image dockerfile [extra build context files...]
	local image=$1 file=$2
	if have "$image"; then
		echo "offline-images: $image exists" >&2
		return
	fi
	echo "offline-images: building $image" >&2
	local ctx
	ctx=$(mktemp -d)
	cp "$file" "$ctx/Dockerfile"
	shift 2
	(($#)) && cp "$@" "$ctx/"
	# The classic builder: it needs no buildx plugin, which such hosts may lack.
	DOCKER_BUILDKIT=0 docker build --build-arg BASE="$OFFLINE_BASE_IMAGE" -t "$image" "$ctx" >"$ctx.log" 2>&1 ||
		{ tail -30 "$ctx.log" >&2; rm -rf "$ctx" "$ctx.log"; exit 1; }
	rm -rf "$ctx" "$ctx.log"
}

build "$OFFLINE_REDIS_IMAGE" redis.Dockerfile
build "$OFFLINE_NGINX_IMAGE" nginx.Dockerfile
# The builder fetches Go modules over HTTPS; give it this host's CA bundle,
# which also holds any TLS-inspecting proxy's certificate.
build "$OFFLINE_GO_IMAGE" golang.Dockerfile /etc/ssl/certs/ca-certificates.crt

cat <<OUT
REDIS_IMAGE=$OFFLINE_REDIS_IMAGE
NGINX_IMAGE=$OFFLINE_NGINX_IMAGE
GO_IMAGE=$OFFLINE_GO_IMAGE
OUT
