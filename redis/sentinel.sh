#!/bin/sh
# Starts one of the Sentinels of a swarm stack with Redis replicas
# (infra/stack/replication.go), which watch the primary and promote a
# replica when it is lost.
#   TALLY_SENTINEL_SELF  this Sentinel's name on the stack's network
#   TALLY_SENTINELS      every Sentinel's name, space-separated
#   TALLY_REDIS          every Redis's name, space-separated
#   TALLY_REDIS_FIRST    the Redis that is the primary when nothing else
#                        says which is: the first deploy
#   TALLY_MASTER_NAME, TALLY_SENTINEL_QUORUM, TALLY_DOWN_AFTER_MS,
#   TALLY_FAILOVER_TIMEOUT_MS: what it watches, and how
# Its config, which Sentinel rewrites as it learns, is in /tmp (memory):
# on a disk, a slow fsync of it (a busy node) stalled Sentinel's timer past
# 2 s and put it in TILT mode, acting on nothing for 30 s, a failover
# among it. So a Sentinel starts knowing nothing: it asks the other
# Sentinels which Redis is the primary now, else the Redis themselves
# (the one that says it is a primary), else it is TALLY_REDIS_FIRST; the
# epoch and the rest it learns from the others within seconds. The
# password stays in memory too. Everything is found by name on the
# overlay (dnsrr): addresses change each time a task is replaced.
set -eu
auth=$(cat "$REDIS_PASSWORD_FILE")
conf=/tmp/sentinel.conf
umask 077

# ask HOST PORT ARGS...: the first line of a running instance's answer; no
# pipe, so no process is left for Sentinel (PID 1 after exec) to find.
ask() {
	host=$1 port=$2
	shift 2
	timeout 1 getent hosts "$host" >/dev/null 2>&1 || return 1 # not running
	out=$(REDISCLI_AUTH=$auth timeout 2 redis-cli -h "$host" -p "$port" --raw "$@" 2>/dev/null) || return 1
	printf '%s\n' "${out%%
*}"
}

primary=
for sentinel in $TALLY_SENTINELS; do
	[ "$sentinel" != "$TALLY_SENTINEL_SELF" ] || continue
	answer=$(ask "$sentinel" 26379 sentinel get-master-addr-by-name "$TALLY_MASTER_NAME") || continue
	case $answer in '' | *' '*) ;; *) primary=$answer && break ;; esac
done
if [ -z "$primary" ]; then
	for redis in $TALLY_REDIS; do
		[ "$(ask "$redis" 6379 role)" = master ] && primary=$redis && break
	done
fi
primary=${primary:-$TALLY_REDIS_FIRST}
echo "redis-sentinel: $TALLY_SENTINEL_SELF starts watching $primary as the primary of $TALLY_MASTER_NAME" >&2

# Names, not addresses: resolve-hostnames before the monitor line that
# names a host.
cat >"$conf" <<EOF
port 26379
dir /tmp
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $TALLY_SENTINEL_SELF
requirepass "$auth"
sentinel sentinel-pass "$auth"
sentinel monitor $TALLY_MASTER_NAME $primary 6379 $TALLY_SENTINEL_QUORUM
sentinel auth-pass $TALLY_MASTER_NAME "$auth"
sentinel down-after-milliseconds $TALLY_MASTER_NAME $TALLY_DOWN_AFTER_MS
sentinel failover-timeout $TALLY_MASTER_NAME $TALLY_FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $TALLY_MASTER_NAME 1
EOF
exec redis-server "$conf" --sentinel
