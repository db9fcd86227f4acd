#!/usr/bin/env bash
# The lab: extra Docker engines on this machine, the project's own test
# hosts for deploying to engines other than the local one.
#
#   lab/lab.sh up      start LAB_NODES engines (default 2, 3 with SWARM=1);
#                      print KEY=value lines
#   lab/lab.sh down    stop them and remove everything up created
#   lab/lab.sh check   say what this machine lacks to run the lab, if anything
#   lab/lab.sh kill N  kill node N's engine and everything it runs, at once,
#                      as a machine that loses power (its namespaces go too)
#   lab/lab.sh start N start node N again on its data root (after kill)
#
# Each engine is a dockerd in network, mount and UTS namespaces of its own
# (unshare), with its own data root, exec root, socket, containerd namespace
# and cgroup parent, on the bridge tallylab0 at 10.87.0.(10+N); the host is
# 10.87.0.1 (LAB_HOST: what runs on this machine for the lab, as the
# registry and the tests' ACME server, listens there). Node 1 serves its Docker API over SSH (key only, a generated
# key and known_hosts), node 2 over TCP with TLS (a generated CA; clients
# without its certificate are refused); every node also has a Unix socket
# for this machine's root. Images named in LAB_IMAGES (default: the images
# the local engine has from make offline-images) are copied in with
# `docker save | docker load`, since no node can pull.
#
# SWARM=1 joins the nodes into a Docker Swarm: node 1 (the SSH one) its
# manager, labelled tally.redis=true for Redis' volume, the others workers
# labelled tally.redis-N=true for its replicas (N the node's number);
# and runs a registry for the images the nodes build and pull (Debian's
# docker-registry, plain HTTP on the bridge, which every node trusts),
# holding the LAB_IMAGES too as REGISTRY/redis:8.0 and so on.
#
# ENGINE=current runs every node on the engine lab/engine.env pins (dockerd,
# docker-proxy, containerd and runc as Docker Engine 29+ ships them), built
# from the Go module proxy on first use and cached under LAB_CACHE; the
# default, ENGINE=system, is this machine's own.
#
# Tests send traffic only to 127.0.0.1 and the lab's own addresses. The
# nodes reach out through this machine (NAT) only as it does itself: the
# Go module proxy and Debian's mirror, for image builds. `up` runs `down`
# first, so it also recovers from a crashed earlier run.
set -euo pipefail

DIR=${LAB_DIR:-/var/lib/tally-lab} # data roots, keys, certificates
RUN=/run/tally-lab                 # sockets, pid files, logs
BRIDGE=tallylab0
NET=10.87.0
SWARM=${SWARM:-}
NODES=${LAB_NODES:-$([ "$SWARM" = 1 ] && echo 3 || echo 2)}
REGISTRY=$NET.1:5000
USER_NAME=tally-lab # the SSH user, allowed the Docker socket of node 1
ENGINE=${ENGINE:-system}
CACHE=${LAB_CACHE:-/var/cache/tally-lab}
# shellcheck source=lab/engine.env
source "$(dirname "$0")/engine.env"
ENGINE_BIN=$CACHE/engine-$MOBY_VERSION-$CONTAINERD_VERSION-$RUNC_VERSION

addr() { echo "$NET.$((10 + $1))"; }
sock() { echo "$RUN/node$1/docker.sock"; }

down() {
	local pidfile
	for pidfile in "$RUN"/node*/sshd.pid "$RUN"/node*/docker.pid "$RUN"/registry.pid; do
		if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
	done
	# dockerd stops its containers and containerd; its namespaces go with it.
	for _ in $(seq 30); do
		pgrep -f "dockerd --data-root $DIR/" >/dev/null || break
		sleep 1
	done
	pkill -9 -f "dockerd --data-root $DIR/" 2>/dev/null || true
	pkill -9 -f "containerd.*$RUN/" 2>/dev/null || true
	for _ in 1 2 3; do nat -D 2>/dev/null || true; done
	ip link del "$BRIDGE" 2>/dev/null || true
	local i
	for i in $(seq 1 9); do ip link del "tl$i-h" 2>/dev/null || true; done
	userdel "$USER_NAME" 2>/dev/null || true
	groupdel "$USER_NAME" 2>/dev/null || true
	grep -E " ($DIR|$RUN)/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$DIR" "$RUN"
}

# nat -I adds, nat -D removes the rules that let the nodes out through this
# machine (Docker sets the FORWARD chain to drop what no rule accepts).
nat() {
	local op=$1
	iptables "$op" FORWARD -i "$BRIDGE" -j ACCEPT -m comment --comment tally-lab
	iptables "$op" FORWARD -o "$BRIDGE" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT -m comment --comment tally-lab
	iptables -t nat "$op" POSTROUTING -s "$NET.0/24" ! -o "$BRIDGE" -j MASQUERADE -m comment --comment tally-lab
}

need() {
	local missing=()
	[ "$(id -u)" = 0 ] || missing+=("root (it makes namespaces, a bridge, iptables rules)")
	for cmd in dockerd docker ip iptables unshare nsenter openssl ssh-keygen curl; do
		command -v "$cmd" >/dev/null || missing+=("$cmd")
	done
	[ -x /usr/sbin/sshd ] || missing+=("sshd (apt-get install openssh-server)")
	case $ENGINE in
	system) ;;
	current)
		if [ ! -x "$ENGINE_BIN/runc" ]; then
			command -v go >/dev/null || missing+=("go (to build the current engine)")
			[ -e /usr/include/seccomp.h ] || missing+=("libseccomp-dev (apt-get install libseccomp-dev)")
			command -v gcc >/dev/null || missing+=("gcc (apt-get install gcc)")
		fi
		;;
	*) missing+=("ENGINE=system or ENGINE=current, not $ENGINE") ;;
	esac
	if [ "$SWARM" = 1 ]; then
		command -v docker-registry >/dev/null || missing+=("docker-registry (apt-get install docker-registry)")
		((NODES >= 2)) || missing+=("LAB_NODES >= 2 for a swarm")
	fi
	if ((${#missing[@]})); then
		echo "lab: missing ${missing[*]}" >&2
		exit 1
	fi
}

tls_material() {
	local d=$DIR/tls
	mkdir -p "$d/client"
	(
		cd "$d"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj "/CN=tally lab CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-subj "/CN=$(addr 2)" -keyout server-key.pem -out server.csr 2>/dev/null
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
			-extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$(addr 2)") \
			-out server-cert.pem 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-subj "/CN=tally lab client" -keyout client/key.pem -out client.csr 2>/dev/null
		openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
			-extfile <(printf 'extendedKeyUsage=clientAuth\n') -out client/cert.pem 2>/dev/null
		cp ca.pem client/ca.pem
		chmod 600 ./*-key.pem client/key.pem
	)
}

ssh_material() {
	local d=$DIR/ssh
	mkdir -p "$d"
	ssh-keygen -q -t ed25519 -N '' -C "tally lab client" -f "$d/id_ed25519"
	ssh-keygen -q -t ed25519 -N '' -C "tally lab node 1" -f "$d/host_ed25519"
	cp "$d/id_ed25519.pub" "$d/authorized_keys"
	printf '%s %s\n' "$(addr 1)" "$(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >"$d/known_hosts"
	# '*': no password, yet not locked (sshd without PAM refuses locked
	# accounts even with a key).
	groupadd --system "$USER_NAME"
	useradd --system --gid "$USER_NAME" --shell /bin/sh --create-home --home-dir "$DIR/home" \
		--password '*' "$USER_NAME"
	cat >"$d/sshd_config" <<EOF
ListenAddress $(addr 1)
HostKey $d/host_ed25519
AuthorizedKeysFile $d/authorized_keys
AllowUsers $USER_NAME
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile $RUN/node1/sshd.pid
SetEnv DOCKER_HOST=unix://$(sock 1)
EOF
}

# engine_name says what the nodes run. Built with go install, the current
# dockerd does not know its own version, so it is lab/engine.env's.
engine_name() {
	local api
	api=$(docker -H "unix://$(sock 1)" version --format '{{.Server.APIVersion}}')
	if [ "$ENGINE" = current ]; then
		echo "moby $MOBY_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION (API $api)"
	else
		echo "$(docker -H "unix://$(sock 1)" version --format '{{.Server.Version}}') (API $api)"
	fi
}

# build_engine builds the engine lab/engine.env pins into ENGINE_BIN, once.
build_engine() {
	local tmp=$ENGINE_BIN.tmp
	[ -x "$ENGINE_BIN/runc" ] && return
	echo "lab: building the current engine (moby $MOBY_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION) into $ENGINE_BIN, once; about 15 minutes on 2 cores" >&2
	rm -rf "$tmp"
	mkdir -p "$tmp"
	(
		export GOBIN=$tmp GOFLAGS='' GOWORK=off
		cd "$tmp"
		go install "github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION" "github.com/moby/moby/v2/cmd/docker-proxy@$MOBY_VERSION"
		go install "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
		CGO_ENABLED=1 go install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
	) >"$tmp.log" 2>&1 || {
		tail -20 "$tmp.log" >&2
		exit 1
	}
	mv "$tmp" "$ENGINE_BIN"
}

start_node() { # N [extra dockerd flags...]
	local n=$1 pid path=$PATH
	shift
	mkdir -p "$DIR/node$n" "$RUN/node$n"
	# The engine's dockerd finds its containerd, shim, runc and docker-proxy
	# on PATH.
	[ "$ENGINE" = current ] && path=$ENGINE_BIN:$PATH
	# shellcheck disable=SC2016 # the inner shell expands them
	PATH=$path unshare --net --mount --uts --propagation private --fork \
		bash -c 'hostname "$0"; exec "$@"' "lab$n" \
		dockerd --data-root "$DIR/node$n/docker" --exec-root "$RUN/node$n/exec" \
		--pidfile "$RUN/node$n/docker.pid" -H "unix://$(sock "$n")" \
		--config-file "$DIR/daemon.json" --containerd-namespace "lab$n" \
		--containerd-plugins-namespace "lab$n-plugins" --cgroup-parent "tallylab$n" "$@" \
		>"$RUN/node$n/dockerd.log" 2>&1 &
	for _ in $(seq 50); do
		pid=$(pgrep -f "dockerd --data-root $DIR/node$n/" | head -1) && break
		sleep 0.1
	done
	[ -n "${pid:-}" ] || { echo "lab: dockerd of node $n did not start" >&2; cat "$RUN/node$n/dockerd.log" >&2; exit 1; }
	echo "$pid" >"$RUN/node$n/ns.pid"
	ip link add "tl$n-h" type veth peer name "tl$n-n"
	ip link set "tl$n-h" master "$BRIDGE" up
	ip link set "tl$n-n" netns "$pid"
	nsenter -t "$pid" -n ip addr add "$(addr "$n")/24" dev "tl$n-n"
	nsenter -t "$pid" -n ip link set "tl$n-n" up
	nsenter -t "$pid" -n ip link set lo up
	nsenter -t "$pid" -n ip route add default via "$NET.1"
	for _ in $(seq 60); do
		docker -H "unix://$(sock "$n")" info >/dev/null 2>&1 && return
		sleep 0.5
	done
	echo "lab: node $n's engine does not answer" >&2
	tail -20 "$RUN/node$n/dockerd.log" >&2
	exit 1
}

# start starts node N with what it serves: node 1 SSH, node 2 TLS.
start() {
	local n=$1
	case $n in
	1) start_node 1 --group "$USER_NAME" ;;
	2) start_node 2 --tlsverify --tlscacert "$DIR/tls/ca.pem" --tlscert "$DIR/tls/server-cert.pem" \
		--tlskey "$DIR/tls/server-key.pem" -H "tcp://$(addr 2):2376" ;;
	*) start_node "$n" ;;
	esac
	if [ "$n" = 1 ]; then
		mkdir -p /run/sshd
		nsenter -t "$(cat "$RUN/node1/ns.pid")" -n /usr/sbin/sshd -f "$DIR/ssh/sshd_config"
	fi
}

# kill_node kills every process in node N's network namespace with SIGKILL:
# its dockerd, containerd, the containers, sshd. The namespace goes with
# the last of them, and the node's end of the bridge with it.
kill_node() {
	local n=$1 ns pid
	[ -f "$RUN/node$n/ns.pid" ] || { echo "lab: node $n is not running" >&2; exit 1; }
	ns=$(readlink "/proc/$(cat "$RUN/node$n/ns.pid")/ns/net") || { echo "lab: node $n is not running" >&2; exit 1; }
	for pid in /proc/[0-9]*; do
		if [ "$(readlink "$pid/ns/net" 2>/dev/null)" = "$ns" ]; then kill -9 "${pid#/proc/}" 2>/dev/null || true; fi
	done
	for _ in $(seq 50); do
		pgrep -f "dockerd --data-root $DIR/node$n/" >/dev/null || break
		sleep 0.1
	done
	rm -f "$RUN/node$n/ns.pid" "$RUN/node$n/docker.pid" "$RUN/node$n/sshd.pid"
	ip link del "tl$n-h" 2>/dev/null || true
}

up() {
	need
	[ "$ENGINE" = current ] && build_engine
	down
	mkdir -p "$DIR" "$RUN"
	# Nothing from /etc/docker/daemon.json; the lab's registry is trusted
	# over plain HTTP.
	printf '{"insecure-registries": ["%s"]}\n' "$REGISTRY" >"$DIR/daemon.json"
	ip link add "$BRIDGE" type bridge
	ip addr add "$NET.1/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	sysctl -qw net.ipv4.ip_forward=1
	nat -I
	tls_material
	ssh_material

	local n
	for n in $(seq 1 "$NODES"); do start "$n"; done

	local images=${LAB_IMAGES:-$(docker image ls --format '{{.Repository}}:{{.Tag}}' 'tally-offline/*' | grep -v debian || true)}
	local image
	for image in $images; do
		for n in $(seq 1 "$NODES"); do
			docker save "$image" | docker -H "unix://$(sock "$n")" load -q >/dev/null
		done
	done

	if [ "$SWARM" = 1 ]; then
		swarm
		# Into the registry too, as REGISTRY/<name>:<tag> (tally-offline/
		# dropped), for services that name images as users' registries do.
		for image in $images; do
			docker -H "unix://$(sock 1)" tag "$image" "$REGISTRY/${image#*/}"
			docker -H "unix://$(sock 1)" push -q "$REGISTRY/${image#*/}" >/dev/null
		done
	fi

	local addrs=()
	for n in $(seq 1 "$NODES"); do addrs+=("$(addr "$n")"); done
	cat <<EOF
LAB_ADDRS=${addrs[*]}
LAB_HOST=$NET.1
LAB_SOCKETS=$(for n in $(seq 1 "$NODES"); do printf 'unix://%s ' "$(sock "$n")"; done | sed 's/ $//')
LAB_SSH_HOST=ssh://$USER_NAME@$(addr 1)
LAB_SSH_OPTS=-i $DIR/ssh/id_ed25519 -o UserKnownHostsFile=$DIR/ssh/known_hosts -o StrictHostKeyChecking=yes
LAB_TLS_HOST=tcp://$(addr 2):2376
LAB_TLS_CERTS=$DIR/tls/client
LAB_ENGINE=$(engine_name)
EOF
	if [ "$SWARM" = 1 ]; then
		cat <<EOF
LAB_SWARM_MANAGER=ssh://$USER_NAME@$(addr 1)
LAB_SWARM_NODES=$(for n in $(seq 1 "$NODES"); do printf 'lab%s ' "$n"; done | sed 's/ $//')
LAB_REGISTRY=$REGISTRY
EOF
	fi
}

# swarm makes node 1 a manager and the others workers, and starts the
# registry on this machine's end of the bridge.
swarm() {
	cat >"$DIR/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $DIR/registry}, delete: {enabled: true}}
http: {addr: "$REGISTRY"}
EOF
	docker-registry serve "$DIR/registry.yml" >"$RUN/registry.log" 2>&1 &
	echo $! >"$RUN/registry.pid"
	local manager n
	manager="docker -H unix://$(sock 1)"
	$manager swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" >/dev/null
	for n in $(seq 2 "$NODES"); do
		docker -H "unix://$(sock "$n")" swarm join --advertise-addr "$(addr "$n")" \
			--token "$($manager swarm join-token -q worker)" "$(addr 1):2377" >/dev/null
	done
	# One Redis on each node (the program's node labels, replication.go):
	# the first beside the manager, as a single Redis was; its replicas,
	# and with them the Sentinels, on the others.
	$manager node update --label-add tally.redis=true lab1 >/dev/null
	for n in $(seq 2 "$NODES"); do
		$manager node update --label-add "tally.redis-$n=true" "lab$n" >/dev/null
	done
	for _ in $(seq 60); do
		curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && return
		sleep 0.5
	done
	echo "lab: the registry does not answer at $REGISTRY" >&2
	cat "$RUN/registry.log" >&2
	exit 1
}

case ${1:-} in
up) up ;;
down) down ;;
check) need ;;
kill) kill_node "${2:?node number}" ;;
start) start "${2:?node number}" ;;
*)
	echo "usage: lab/lab.sh up|down|check|kill N|start N" >&2
	exit 2
	;;
esac
