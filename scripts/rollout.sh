#!/usr/bin/env bash
# make rollout: changes the running Compose stack with no failed request.
#   The app: build the image, start as many new replicas as are running,
#   wait until they are healthy, then stop the old ones gracefully. (Compose
#   alone would recreate every replica at once.)
#   The edge: when nginx's container would change (its image or its service
#   in docker-compose.yml), a new nginx starts beside the old one in the
#   edge container's network namespace, both listening with reuseport, and
#   the old one quits gracefully once the new one is healthy (a handoff);
#   otherwise nginx reloads its config (nginx/) in place, once nginx -t
#   accepts it. A config nginx refuses stops the rollout with nginx's
#   reason, and nginx keeps serving the config it has.
# COMPOSE overrides the compose command, e.g. COMPOSE="docker compose -p other".
# ROLLOUT=edge changes only the edge; ROLLOUT=web only the app.
# EDGE=handoff hands the port to a new nginx even when its container would
# not change: nginx restarted with no failed request.
set -euo pipefail
read -r -a compose <<<"${COMPOSE:-docker compose}"
what=${ROLLOUT:-web edge}
nginx=(nginx -p /etc/nginx/tally/ -c nginx.conf)

rollout_web() {
	mapfile -t old < <("${compose[@]}" ps -q web)
	n=${#old[@]}
	echo "rollout: building the new app image"
	"${compose[@]}" build web
	echo "rollout: starting $n new replicas beside the $n running ones"
	"${compose[@]}" up -d --no-deps --no-recreate --wait --scale "web=$((2 * n))" web
	# nginx re-resolves the replicas every second (nginx/upstream.conf).
	sleep 2
	echo "rollout: retiring the old replicas (SIGTERM, 15s to finish their requests)"
	docker stop -t 15 "${old[@]}" >/dev/null
	docker rm "${old[@]}" >/dev/null
	"${compose[@]}" ps web
}

rollout_edge() {
	mapfile -t old < <("${compose[@]}" ps -q nginx)
	# The config nginx is about to load, checked in every running nginx first.
	for id in "${old[@]}"; do
		if ! out=$(docker exec "$id" "${nginx[@]}" -t -q 2>&1); then
			echo "rollout: nginx refused its config; it keeps serving the one it has:" >&2
			echo "$out" >&2
			exit 1
		fi
	done
	# Would Compose recreate nginx? (Its config hash cannot be compared by
	# hand: Compose hashes network_mode as the edge container's id.)
	if ! plan=$("${compose[@]}" --dry-run up -d --no-deps nginx 2>&1); then
		echo "rollout: docker compose up --dry-run nginx failed:" >&2
		echo "$plan" >&2
		exit 1
	fi
	if ! grep -q Recreate <<<"$plan" && [ "${EDGE:-}" != handoff ]; then
		echo "rollout: nginx: reloading its config in place"
		for id in "${old[@]}"; do docker exec "$id" "${nginx[@]}" -s reload; done
		return
	fi
	n=${#old[@]}
	echo "rollout: nginx: starting a new nginx beside the old one; it takes over the port"
	if ! "${compose[@]}" up -d --no-deps --no-recreate --wait --scale "nginx=$((2 * n))" nginx; then
		echo "rollout: the new nginx did not become healthy; the old one keeps serving" >&2
		exit 1
	fi
	echo "rollout: the old nginx quits gracefully (SIGQUIT, 10s to finish its requests)"
	docker stop -t 10 "${old[@]}" >/dev/null
	docker rm "${old[@]}" >/dev/null
	"${compose[@]}" ps nginx
}

if [ -z "$("${compose[@]}" ps -q web)" ] || [ -z "$("${compose[@]}" ps -q nginx)" ]; then
	echo "rollout: the stack is not running; start it with make up" >&2
	exit 1
fi
for part in $what; do
	case $part in
	web) rollout_web ;;
	edge) rollout_edge ;;
	*) echo "rollout: ROLLOUT=$what: the parts are web and edge" >&2; exit 2 ;;
	esac
done
