#!/usr/bin/env bash
# make up: checks what the stack needs on this host, sets up what it can
# (saying so), and otherwise stops with one line naming what is missing and
# the command that fixes it, before anything starts; then starts the stack
# in the background and waits until it is healthy. COMPOSE overrides the
# compose command ("docker compose -p other"); REPLICAS the web replicas.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a compose <<<"${COMPOSE:-docker compose}"

say() { echo "make up: $*" >&2; }
fail() {
	say "$*"
	exit 1
}

# A setting as Compose reads it: the environment, else .env, else default.
setting() {
	local v=${!1:-}
	[ -z "$v" ] && [ -f .env ] && v=$(sed -n "s/^$1=//p" .env | tail -n 1)
	echo "${v:-$2}"
}

command -v docker >/dev/null || fail "no docker command: install Docker Engine (Debian: sudo apt-get install docker.io)"
if ! out=$(docker info --format '{{.ServerVersion}}' 2>&1); then
	case $out in
	*"permission denied"*) fail "no access to the Docker engine's socket: run as root, or join the docker group (sudo usermod -aG docker \"\$USER\", then log in again)" ;;
	*) fail "the Docker engine does not answer ($(tail -n 1 <<<"$out")): start it (sudo service docker start)" ;;
	esac
fi

if [ "${compose[*]}" = "docker compose" ] && ! docker compose version --short 2>/dev/null | grep -q '^v\?2\.'; then
	command -v go >/dev/null || fail "no Docker Compose v2 (docker compose): install Docker's docker-compose-plugin, or Go (https://go.dev/dl/) and then run make compose-plugin"
	say "no Docker Compose v2: building its plugin from the Go module proxy (make compose-plugin, about a minute)"
	make -s compose-plugin >&2
fi

# The images, as docker-compose.yml names them by default. One that cannot
# be pulled: for the official ones, the stand-ins offline/build.sh makes from
# Debian's packages; for any other, a stop.
fallback=()
for var in REDIS_IMAGE NGINX_IMAGE GO_IMAGE; do
	default=$(sed -n "s/.*\${$var:-\([^}]*\)}.*/\1/p" docker-compose.yml | head -n 1)
	image=$(setting "$var" "$default")
	docker image inspect "$image" >/dev/null 2>&1 || docker pull -q "$image" >/dev/null 2>&1 && continue
	[ "$image" = "$default" ] || fail "cannot pull $image ($var): check the name and the registry, or unset $var for the default, $default"
	fallback+=("$var")
done
if ((${#fallback[@]})); then
	say "cannot pull the official images (${fallback[*]}): using local stand-ins built from Debian's packages (make offline-images)"
	command -v debootstrap >/dev/null || fail "cannot pull the official images and cannot build stand-ins: sudo apt-get install debootstrap, then make up"
	[ "$(id -u)" = 0 ] || fail "cannot pull the official images; building stand-ins needs root: sudo make offline-images, then make up"
	while IFS='=' read -r k v; do
		[[ " ${fallback[*]} " == *" $k "* ]] && export "$k=$v"
	done < <(bash offline/build.sh)
fi

# A certificate of your own: both files, readable.
cert_file=$(setting TLS_CERT_FILE "")
key_file=$(setting TLS_KEY_FILE "")
if [ -n "$cert_file$key_file" ]; then
	if [ -z "$cert_file" ] || [ -z "$key_file" ]; then fail "TLS_CERT_FILE and TLS_KEY_FILE: set both, the certificate (its chain) and its key, or neither for the local CA's"; fi
	for f in "$cert_file" "$key_file"; do
		if [ ! -f "$f" ] || [ ! -r "$f" ]; then fail "$f (TLS_CERT_FILE/TLS_KEY_FILE) is not a readable file"; fi
	done
fi

# The ports: free, or already this stack's own nginx (make up again).
bind=$(setting HTTP_BIND 127.0.0.1)
port=$(setting HTTP_PORT 5002)
tls_port=$(setting HTTPS_PORT 5443)
probe=$bind
[ "$probe" = 0.0.0.0 ] && probe=127.0.0.1
for p in "HTTP_PORT $port" "HTTPS_PORT $tls_port"; do
	read -r var n <<<"$p"
	if (exec 3<>"/dev/tcp/$probe/$n") 2>/dev/null && [ -z "$("${compose[@]}" ps -q nginx 2>/dev/null)" ]; then
		fail "port $n on $bind is taken by another program: set $var in .env to a free one (ss -ltnp 'sport = :$n' shows which program has it)"
	fi
done

"${compose[@]}" up -d --build --wait --scale "web=${REPLICAS:-3}"

if [ -n "$cert_file" ]; then
	echo "tally is up: http://localhost:$port/ and https://localhost:$tls_port/ (HTTPS with your certificate, TLS_CERT_FILE)"
	exit 0
fi
# The local CA's certificate, for clients to trust (certs/: the CA may sign
# for this machine's local names only).
ca=tally-local-ca.pem
"${compose[@]}" cp certs:/var/lib/tally/tls/ca.pem "$ca" >/dev/null 2>&1 || say "could not copy the local CA's certificate to $ca (${compose[*]} cp certs:/var/lib/tally/tls/ca.pem $ca)"
echo "tally is up: http://localhost:$port/ and https://localhost:$tls_port/"
echo "  HTTPS is served with a certificate of this stack's own CA, in $ca; to trust it:"
echo "    curl --cacert $ca https://localhost:$tls_port/count"
echo "    this machine: sudo cp $ca /usr/local/share/ca-certificates/tally-local-ca.crt && sudo update-ca-certificates"
echo "    a browser: import $ca as an authority (it may vouch for localhost, 127.0.0.1 and ::1 only)"
