#!/bin/sh
# Runs before redis/start.sh's text, in the same shell, for each Redis of a
# swarm stack with replicas (infra/stack/replication.go): it chooses what
# start.sh's redis-server gets beyond its own settings, as arguments.
#   TALLY_REDIS_SELF     this Redis's name on the stack's network (redis-2)
#   TALLY_REDIS_FIRST    the Redis that is the primary when no Sentinel
#                        names one: the first deploy
#   TALLY_SENTINELS      the Sentinels' names, space-separated
#   TALLY_MASTER_NAME    the name they know the primary by
# A Redis that starts asks the Sentinels which Redis is the primary now and
# becomes its replica (or stays the primary, if it is the one), so a node
# that comes back after a failover rejoins as a replica, not as a second
# primary. The password it shows the primary (masterauth) goes in a file in
# /tmp (memory, this container's), never on the command line.
set -eu
auth=$(cat "$REDIS_PASSWORD_FILE")
primary=
# A Sentinel's name resolves once its task runs (none do on the first
# deploy, and a lookup of a name nothing has can wait on DNS servers
# outside the swarm: at most a second each). While some run but none
# answers, a few tries: after every node restarted at once the Sentinels
# may start a moment after the Redis.
for _ in 1 2 3 4 5; do
	running=
	for sentinel in $TALLY_SENTINELS; do
		timeout 1 getent hosts "$sentinel" >/dev/null 2>&1 || continue
		running=yes
		# No pipe: nothing left running for redis-server, PID 1 after exec.
		answer=$(REDISCLI_AUTH=$auth timeout 2 redis-cli -h "$sentinel" -p 26379 --raw \
			sentinel get-master-addr-by-name "$TALLY_MASTER_NAME" 2>/dev/null) || answer=
		answer=${answer%%
*}
		case $answer in '' | *' '*) ;; *) primary=$answer && break 2 ;; esac
	done
	[ -n "$running" ] || break
	sleep 1
done
if [ -z "$primary" ]; then
	primary=$TALLY_REDIS_FIRST
	echo "redis-replica: no Sentinel names a primary; $primary is it" >&2
fi
conf=/tmp/tally-replication.conf
(umask 077 && printf 'masterauth "%s"\n' "$auth" >"$conf")
# A primary takes a visit only while a replica has it within 10 s
# (min-replicas-*): one cut off from every replica stops counting instead
# of counting what a failover would drop.
set -- --include "$conf" --replica-announce-ip "$TALLY_REDIS_SELF" \
	--min-replicas-to-write 1 --min-replicas-max-lag 10 --repl-diskless-sync yes "$@"
if [ "$primary" != "$TALLY_REDIS_SELF" ]; then
	echo "redis-replica: $TALLY_REDIS_SELF starts as a replica of $primary" >&2
	set -- "$@" --replicaof "$primary" 6379
fi
