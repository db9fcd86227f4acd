#!/bin/sh
# Writes the Redis password that Redis and the app read, for Compose: once,
# into the volume mounted at TALLY_SECRETS_DIR, so a fresh clone runs with no
# file on the host, and the same password serves every later start. A file
# the user gives (REDIS_PASSWORD_SECRET, mounted at GIVEN) wins over it;
# empty (the default, /dev/null) means none was given. The file is 0444:
# Redis and the app run as different users, and only the volume's owner
# may write it.
set -eu
dir=${TALLY_SECRETS_DIR:?}
given=${GIVEN:-/run/secrets/redis_password}
file=$dir/redis_password
if [ -s "$given" ]; then
	if ! password=$(cat "$given" 2>/dev/null); then
		echo "redis-password: cannot read REDIS_PASSWORD_SECRET as uid $(id -u): make the file readable to all (0644) and keep it in a directory only you can enter" >&2
		exit 2
	fi
	case $password in *[\\\"\'\ \	]* | *"
"*)
		echo "redis-password: the password in REDIS_PASSWORD_SECRET must not contain quotes, backslashes or white space" >&2
		exit 2 ;;
	esac
	printf '%s' "$password" >"$file.new"
elif [ ! -s "$file" ]; then
	# 24 random bytes as hex: nothing in it for a shell or Redis to quote.
	od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$file.new"
	echo "redis-password: made a new random password (kept in the volume; REDIS_PASSWORD_SECRET gives your own)" >&2
fi
if [ -e "$file.new" ]; then
	chmod 0444 "$file.new"
	mv -f "$file.new" "$file"
fi
