#!/bin/sh
# Starts Redis for tally; Compose and the Pulumi program both run this file.
# The password comes from the file REDIS_PASSWORD_FILE names (or, for
# compatibility, REDIS_PASSWORD) and reaches redis-server on stdin, as
# config, so it never shows in a process list. `exec` keeps redis-server
# PID 1, so it gets SIGTERM and shuts down cleanly. AOF with fsync every
# second, plus RDB snapshots.
set -eu
if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
	REDIS_PASSWORD=$(cat "$REDIS_PASSWORD_FILE")
fi
: "${REDIS_PASSWORD:?REDIS_PASSWORD_FILE (or REDIS_PASSWORD) must be set}"
case $REDIS_PASSWORD in *[\\\"\'\ ]*)
	echo "REDIS_PASSWORD must not contain quotes, backslashes or spaces" >&2
	exit 2 ;;
esac
# Memory is capped below the container's limit (256 MB) so Redis refuses or
# evicts instead of being killed; volatile-ttl evicts only keys with a TTL,
# the remembered visit ids, never the counter.
exec redis-server - --appendonly yes --appendfsync everysec \
	--save "3600 1 300 100 60 10000" --dir /data \
	--maxmemory "${REDIS_MAXMEMORY:-200mb}" --maxmemory-policy volatile-ttl "$@" <<EOF
requirepass "$REDIS_PASSWORD"
EOF
