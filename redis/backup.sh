#!/bin/sh
# Runs inside the stack's Redis container (scripts/backup.sh sends it with
# docker exec), where redis-cli, redis-check-rdb and the password file are.
#   backup:  a consistent snapshot (the RDB a replica would get, from a
#            fork) on stdout, once redis-check-rdb accepts it.
#   restore: the RDB on stdin, checked whole first; then this Redis loads it
#            as a replica of a throwaway redis-server serving the file, and
#            becomes a primary again. Online, through Redis's own full sync
#            (which rewrites the AOF), so the volume is never edited by
#            hand; a sync that fails leaves the data as it was. Refuses a
#            Redis that holds data unless FORCE=1.
#   schedule: the stack's backup service (tally:backupEvery): a snapshot of
#            the Redis at REDIS_HOST every BACKUP_EVERY seconds into
#            BACKUP_DIR, the last BACKUP_RETAIN kept; a failed one is
#            logged, leaves no file, and the next comes on time.
set -eu
REDISCLI_AUTH=$(cat "$REDIS_PASSWORD_FILE")
export REDISCLI_AUTH
host=${REDIS_HOST:-127.0.0.1}
work=${BACKUP_DIR:-/tmp}/.tally-backup
# The throwaway server's port, on this container's loopback only.
port=6390

fail() {
	echo "$*" >&2
	exit 1
}

checked() {
	if ! out=$(redis-check-rdb "$1" 2>&1); then
		# The line after the banner says what is wrong, e.g. "RDB CRC error".
		why=$(printf '%s\n' "$out" | sed -n '/RDB ERROR DETECTED/{n;s/^\[offset [0-9]*\] //;p;q;}')
		fail "not a whole Redis snapshot: ${why:-redis-check-rdb refused it}"
	fi
}

link_up() {
	redis-cli info replication | grep -q '^master_link_status:up'
}

# snapshot leaves a checked snapshot at $work/dump.rdb.
snapshot() {
	rm -rf "$work" && mkdir -p "$work"
	# --rdb - would add the transfer's end marker to the file: a file first.
	redis-cli -h "$host" --rdb "$work/dump.rdb" >/dev/null 2>"$work/log" || fail "redis-cli --rdb: $(cat "$work/log")"
	checked "$work/dump.rdb"
}

case ${1:-} in
backup)
	snapshot
	cat "$work/dump.rdb"
	rm -rf "$work"
	;;
schedule)
	dir=${BACKUP_DIR:?}
	while :; do
		file=$dir/tally-$(date -u +%Y%m%dT%H%M%SZ).rdb
		if why=$( (snapshot) 2>&1) && mv "$work/dump.rdb" "$file"; then
			# Names sort by time: all but the newest BACKUP_RETAIN go.
			find "$dir" -maxdepth 1 -name 'tally-*.rdb' | sort -r | tail -n +"$((BACKUP_RETAIN + 1))" | xargs -r rm -f
			echo "backup: $file ($(wc -c <"$file") bytes); $(find "$dir" -maxdepth 1 -name 'tally-*.rdb' | wc -l) kept" | tee /tmp/backup-status
		else
			echo "backup: failed, no file written: $why; next in ${BACKUP_EVERY}s" | tee /tmp/backup-status >&2
		fi
		rm -rf "$work"
		sleep "$BACKUP_EVERY"
	done
	;;
restore)
	rm -rf "$work" && mkdir -p "$work"
	trap 'rm -rf "$work"' EXIT
	cat >"$work/restore.rdb"
	[ -s "$work/restore.rdb" ] || fail "the backup file is empty"
	checked "$work/restore.rdb"
	# A replicated Redis (a swarm's, with Sentinels) would have the
	# Sentinels fight the load's own replication.
	if redis-cli info replication | grep -Eq '^(role:slave|connected_slaves:[1-9])'; then
		fail "this Redis is replicated (tally:redisReplicas): restore into a stack deployed with tally:redisReplicas 0, then raise it again; the replicas copy the restored data"
	fi
	keys=$(redis-cli dbsize)
	if [ "$keys" != 0 ] && [ "${FORCE:-}" != 1 ]; then
		fail "this Redis holds $keys keys (visits: $(redis-cli get visits)); FORCE=1 replaces them with the backup"
	fi
	redis-server - --port "$port" --bind 127.0.0.1 --dir "$work" --dbfilename restore.rdb \
		--appendonly no --save "" --repl-diskless-sync-delay 0 --daemonize no \
		--logfile "$work/server.log" <<CONF &
requirepass "$REDISCLI_AUTH"
CONF
	trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
	i=0
	until redis-cli -p "$port" ping >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -lt 100 ] || fail "the server for the backup did not start: $(tail -3 "$work/server.log")"
		sleep 0.1
	done
	masterauth=$(redis-cli config get masterauth | sed -n 2p)
	redis-cli config set masterauth "$REDISCLI_AUTH" >/dev/null
	redis-cli replicaof 127.0.0.1 "$port" >/dev/null
	i=0
	until link_up || [ "$i" -ge 600 ]; do
		i=$((i + 1))
		sleep 0.1
	done
	# A primary again, loaded or not.
	redis-cli replicaof no one >/dev/null
	redis-cli config set masterauth "$masterauth" >/dev/null
	[ "$i" -lt 600 ] || fail "the backup did not load within a minute; Redis keeps its data"
	echo "restored $(redis-cli dbsize) keys (visits: $(redis-cli get visits))"
	;;
*)
	fail "usage: backup.sh backup|restore"
	;;
esac
