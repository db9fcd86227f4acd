#!/bin/sh
# Starts one of the Sentinels of a swarm stack with Redis replicas
# (infra/stack/replication.go), which watch the primary and promote a
# replica when it is lost.
#   TALLY_SENTINEL_SELF  this Sentinel's name on the stack's network
#   TALLY_SENTINELS      every Sentinel's name, space-separated
#   TALLY_REDIS_FIRST    the Redis that is the primary when no Sentinel
#                        names one: the first deploy
#   TALLY_MASTER_NAME, TALLY_SENTINEL_QUORUM, TALLY_DOWN_AFTER_MS,
#   TALLY_FAILOVER_TIMEOUT_MS: what it watches, and how
# Sentinel keeps what it learns (the current primary, the replicas, the
# other Sentinels, the epoch) in its config file, on its volume, across
# restarts. A first start asks the other Sentinels which Redis is the
# primary now. Who it is and the password are written afresh at every
# start, so a new password takes effect; the file is this user's alone.
# Everything is found by name on the overlay (dnsrr): addresses change
# each time a task is replaced.
set -eu
auth=$(cat "$REDIS_PASSWORD_FILE")
dir=/data
conf=$dir/sentinel.conf
umask 077

if [ ! -s "$conf" ]; then
	primary=
	for sentinel in $TALLY_SENTINELS; do
		[ "$sentinel" != "$TALLY_SENTINEL_SELF" ] || continue
		answer=$(REDISCLI_AUTH=$auth timeout 2 redis-cli -h "$sentinel" -p 26379 --raw \
			sentinel get-master-addr-by-name "$TALLY_MASTER_NAME" 2>/dev/null | head -n 1) || answer=
		case $answer in '' | *' '*) ;; *) primary=$answer && break ;; esac
	done
	primary=${primary:-$TALLY_REDIS_FIRST}
	echo "redis-sentinel: $TALLY_SENTINEL_SELF starts watching $primary as the primary of $TALLY_MASTER_NAME" >&2
	cat >"$conf" <<EOF
sentinel monitor $TALLY_MASTER_NAME $primary 6379 $TALLY_SENTINEL_QUORUM
sentinel down-after-milliseconds $TALLY_MASTER_NAME $TALLY_DOWN_AFTER_MS
sentinel failover-timeout $TALLY_MASTER_NAME $TALLY_FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $TALLY_MASTER_NAME 1
EOF
fi

# Names, not addresses (resolve-hostnames before the monitor line that
# names a host), and the password, ahead of what Sentinel kept.
{
	cat <<EOF
port 26379
dir $dir
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $TALLY_SENTINEL_SELF
requirepass "$auth"
sentinel sentinel-pass "$auth"
EOF
	# Sentinel writes requirepass back as the default user's line, with
	# the password's hash: that goes too.
	grep -v -e '^port ' -e '^dir ' -e '^requirepass ' -e '^user ' -e '^sentinel resolve-hostnames ' \
		-e '^sentinel announce-' -e '^sentinel sentinel-pass ' -e '^sentinel auth-pass ' "$conf" || true
	printf 'sentinel auth-pass %s "%s"\n' "$TALLY_MASTER_NAME" "$auth"
} >"$conf.new"
mv "$conf.new" "$conf"
exec redis-server "$conf" --sentinel
