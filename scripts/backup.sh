#!/usr/bin/env bash
# make backup [FILE=...]: a snapshot of the stack's Redis into FILE (by
#   default backups/tally-<UTC time>.rdb) on this machine.
# make restore FILE=... [FORCE=1]: that snapshot loaded into the stack's
#   Redis; refused, with nothing changed, when the file is not a whole
#   snapshot or Redis holds data and FORCE is not 1.
# The Redis is the Compose stack's (COMPOSE overrides the command), or, with
# STACK, the Redis container of that Pulumi stack (its tally.stack label) on
# the engine DOCKER_HOST names (for a swarm: the node labelled tally.redis),
# or the container REDIS_CONTAINER names. redis/backup.sh does the work
# inside the container.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a compose <<<"${COMPOSE:-docker compose}"
verb=${1:-}
file=${FILE:-}

die() {
	echo "$verb: $*" >&2
	exit 1
}

if [ -n "${REDIS_CONTAINER:-}" ]; then
	container=$REDIS_CONTAINER
elif [ -n "${STACK:-}" ]; then
	container=$(docker ps -q --filter "label=tally.stack=$STACK" --filter label=tally.role=redis | head -1)
	[ -n "$container" ] || die "no running Redis of stack $STACK on ${DOCKER_HOST:-this engine} (set DOCKER_HOST to its host)"
else
	container=$("${compose[@]}" ps -q redis 2>/dev/null || true)
	[ -n "$container" ] || die "no running Redis: start the stack (make up), or say STACK= for a Pulumi stack"
fi
inside=$(cat redis/backup.sh)

case $verb in
backup)
	file=${file:-backups/tally-$(date -u +%Y%m%dT%H%M%SZ).rdb}
	mkdir -p "$(dirname "$file")"
	# Written beside, then moved: a failed backup leaves no file to trust.
	if ! docker exec "$container" sh -c "$inside" sh backup >"$file.partial"; then
		rm -f "$file.partial"
		die "failed; no file written"
	fi
	mv "$file.partial" "$file"
	echo "backup: $file ($(wc -c <"$file") bytes)"
	;;
restore)
	[ -n "$file" ] || die "say which file: make restore FILE=backups/….rdb"
	if [ ! -f "$file" ] || [ ! -r "$file" ]; then
		die "cannot read $file"
	fi
	if ! docker exec -i -e "FORCE=${FORCE:-}" "$container" sh -c "$inside" sh restore <"$file"; then
		die "refused $file; the stack's Redis is as it was"
	fi
	;;
*)
	die "usage: scripts/backup.sh backup|restore"
	;;
esac
