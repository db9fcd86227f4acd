#!/bin/sh
# Makes the config release in $TALLY_NGINX_RELEASES/$1 the one every nginx
# of the stack serves (nginx/serve.sh follows it), if nginx accepts it: an
# nginx refusing a config says why here and exits non-zero, and the running
# nginx keeps the config it has. It runs where nginx runs (its network
# namespace: nginx -t resolves the upstream's host names).
#
# The release's files are already there (the Pulumi program uploads them on
# one engine), or, with TALLY_RELEASE_FILES naming them, are written here
# from the environment (a swarm: nginx.conf from TALLY_FILE_nginx_conf, and
# tls/cert.pem from TALLY_FILE_tls_cert_pem), and those TALLY_RELEASE_SECRETS
# names from Swarm secrets (tls/key.pem from /run/secrets/tls_key_pem),
# after which it stays up, as a swarm service does, doing nothing.
set -eu
releases=${TALLY_NGINX_RELEASES:?TALLY_NGINX_RELEASES names the config volume}
id=${1:?usage: release.sh ID}
case $id in *[!0-9a-f]*) echo "release: $id is not a release id" >&2; exit 2 ;; esac

# A release id names its content, so one already there is this one.
files=${TALLY_RELEASE_FILES:-}
if [ -n "$files" ] && [ ! -d "$releases/$id" ]; then
	rm -rf "${releases:?}/$id.new"
	mkdir "$releases/$id.new"
	# A name is a file, or a file in one directory (tls/cert.pem).
	checked() {
		case $1 in
		*[!A-Za-z0-9._/-]* | .* | */.* | */*/* | /* | */) echo "release: bad file name $1" >&2; exit 2 ;;
		*/*) mkdir -p "$releases/$id.new/${1%/*}" ;;
		esac
	}
	env_name() { printf '%s' "$1" | tr -c 'A-Za-z0-9\n' _; }
	for name in $files; do
		checked "$name"
		var=TALLY_FILE_$(env_name "$name")
		content=
		eval "content=\${$var?$var is not set}"
		printf '%s' "$content" >"$releases/$id.new/$name"
	done
	for name in ${TALLY_RELEASE_SECRETS:-}; do
		checked "$name"
		cp "/run/secrets/$(env_name "$name")" "$releases/$id.new/$name"
		chmod 0600 "$releases/$id.new/$name"
	done
	mv "$releases/$id.new" "$releases/$id"
fi

if ! nginx -t -q -p "$releases/$id/" -c nginx.conf; then
	echo "release: nginx refused config release $id; the running nginx keeps its config" >&2
	exit 1
fi
printf '%s\n' "$id" >"$releases/.current.new"
mv -f "$releases/.current.new" "$releases/current"
echo "release: config release $id is current" >&2

if [ -n "$files" ]; then
	exec sleep infinity
fi
