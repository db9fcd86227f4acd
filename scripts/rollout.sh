#!/usr/bin/env bash
# Rolls a newly built app image out over the running Compose stack with no
# downtime: build the image, start as many new replicas as are running,
# wait until they are healthy, then stop the old ones gracefully. (Compose
# alone would recreate every replica at once.) COMPOSE overrides the
# compose command, e.g. COMPOSE="docker compose -p other".
set -euo pipefail
read -r -a compose <<<"${COMPOSE:-docker compose}"

mapfile -t old < <("${compose[@]}" ps -q web)
n=${#old[@]}
if [ "$n" -eq 0 ]; then
	echo "rollout: no web replicas are running; start the stack with make up" >&2
	exit 1
fi
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
