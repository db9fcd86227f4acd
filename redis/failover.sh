#!/bin/sh
# make failover: moves a replicated swarm stack's primary to a replica with
# no acknowledged visit lost; runs in a Sentinel's container
# (scripts/failover.sh sends it with docker exec), where redis-cli and the
# password file are, and every Redis answers by name.
#
# SENTINEL FAILOVER alone assumes the primary is gone: the old one takes
# writes until Sentinel demotes it, seconds later, and its other replica
# acknowledges them; both then follow the new primary and drop them (seen
# in TestDeployToSwarm: 144 acknowledged visits lost). So, around it: the
# old primary refuses writes (min-replicas-to-write past its replicas:
# NOREPLICAS, nothing counted; CLIENT PAUSE would also hold the Sentinels'
# hello messages, and with them their pings, until they think it down), a
# replica catches up with it, the Sentinels promote one, and the old
# primary becomes its replica at once. Visits in that second or two get a
# 503 saying Redis has too few replicas.
set -eu
REDISCLI_AUTH=$(cat "$REDIS_PASSWORD_FILE")
export REDISCLI_AUTH
name=${TALLY_MASTER_NAME:-tally}

sentinel() { redis-cli -p 26379 --raw sentinel "$@"; }
primary() { sentinel get-master-addr-by-name "$name" | head -n 1; }
fail() {
	echo "failover: $*" >&2
	exit 1
}

old=$(primary)
[ -n "$old" ] || fail "the Sentinels name no primary of $name"
on_old() { redis-cli -h "$old" --raw "$@"; }
# Past any number of replicas: every write refused from here on.
had=$(on_old config get min-replicas-to-write | sed -n 2p)
on_old config set min-replicas-to-write 1000 >/dev/null || fail "cannot stop $old's writes"
trap 'on_old config set min-replicas-to-write "${had:-1}" >/dev/null 2>&1 || true' EXIT

# A replica has everything the primary wrote (its acknowledged offset).
i=0
until on_old info replication | tr -d '\r' | awk -F'[:=,]' '
	/^master_repl_offset:/ { want = $2 }
	/^slave[0-9]+:/ { for (f = 1; f < NF; f++) if ($f == "offset") got[$(f + 1)] = 1 }
	END { exit !(want in got) }'; do
	i=$((i + 1))
	[ "$i" -lt 50 ] || fail "no replica caught up with $old within 5 s; nothing changed"
	sleep 0.1
done

sentinel failover "$name" >/dev/null || fail "SENTINEL FAILOVER $name refused; nothing changed"
i=0
until new=$(primary) && [ -n "$new" ] && [ "$new" != "$old" ]; do
	i=$((i + 1))
	[ "$i" -lt 300 ] || fail "the Sentinels did not promote a replica of $old within 30 s"
	sleep 0.1
done
on_old replicaof "$new" 6379 >/dev/null
echo "failover: $new is the primary; $old is its replica"
