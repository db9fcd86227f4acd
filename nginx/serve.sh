#!/bin/sh
# Runs nginx on the config release that $TALLY_NGINX_RELEASES/current names
# (nginx/release.sh writes it, once nginx -t passed), and reloads nginx in
# place, gracefully, whenever it names another: a config change reaches the
# running nginx without a new container, so no connection is dropped. The
# Pulumi program runs this text as `sh -c`, so a remote host needs no copy.
#
# This shell is PID 1: it passes SIGQUIT (nginx's graceful stop, the
# container's stop signal) and SIGTERM on to nginx and ends when nginx does.
set -eu
releases=${TALLY_NGINX_RELEASES:?TALLY_NGINX_RELEASES names the config volume}
live=/tmp/nginx/current # a link to the release nginx runs; -p reads through it
# A certificate kept outside the releases (the certs service's, by ACME):
# when it changes, nginx reloads gracefully, as for a new release.
cert=${TALLY_TLS_CERT:-}

# What the certificate is now: "" without one.
stamp() { if [ -n "$cert" ] && [ -r "$cert" ]; then cksum <"$cert"; fi; }

# The release named in $releases/current, once it is complete: "" until then.
named() {
	id=
	if [ -r "$releases/current" ]; then read -r id <"$releases/current" || true; fi
	case $id in *[!0-9a-f]* | "") id= ;; esac
	[ -n "$id" ] && [ -r "$releases/$id/nginx.conf" ] || id=
	echo "$id"
}

# Point $live at release $1, through a rename: nginx never reads half a link.
use() {
	mkdir -p /tmp/nginx
	ln -sfn "$releases/$1" /tmp/nginx/next
	mv -f -T /tmp/nginx/next "$live"
}

# A new container may start before its host's first release is written.
for _ in $(seq 60); do
	[ -n "$(named)" ] && break
	sleep 1
done
seen=$(named)
[ -n "$seen" ] || { echo "serve: no config release in $releases after 60s" >&2; exit 1; }
use "$seen"
served=$(stamp)
nginx -p "$live/" -c nginx.conf -g 'daemon off;' &
pid=$!
trap 'kill -QUIT "$pid" 2>/dev/null || true' QUIT
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT

while kill -0 "$pid" 2>/dev/null; do
	# wait, unlike sleep, returns as soon as a trapped signal arrives.
	sleep 1 &
	wait $! || true
	got=$(stamp)
	if [ "$got" != "$served" ] && [ "$got" != "${refused:-}" ]; then
		if out=$(nginx -t -q -p "$live/" -c nginx.conf 2>&1); then
			echo "serve: a new certificate in $cert: reloading nginx gracefully" >&2
			served=$got
			kill -HUP "$pid"
		else
			echo "serve: the new certificate in $cert refused, still serving the one before: $out" >&2
			refused=$got
		fi
	fi
	now=$(named)
	if [ -z "$now" ] || [ "$now" = "$seen" ]; then continue; fi
	# Checked again here: this nginx may be another version than the one
	# that checked the release. Refused, it keeps serving the one it has.
	if out=$(nginx -t -q -p "$releases/$now/" -c nginx.conf 2>&1); then
		use "$now"
		echo "serve: config release $now: reloading nginx gracefully" >&2
		kill -HUP "$pid"
	else
		echo "serve: config release $now refused, still serving $seen: $out" >&2
	fi
	seen=$now
done
wait "$pid"
