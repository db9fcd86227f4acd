#!/usr/bin/env bash
# make failover STACK=name: moves the primary of a swarm stack's replicated
# Redis (tally:redisReplicas) to one of its replicas, with no acknowledged
# visit lost (redis/failover.sh, run in a Sentinel's container: DOCKER_HOST
# names a node that runs one, as the manager of a lab swarm does). For
# maintenance of the primary's node.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STACK:-}" ] || { echo "failover: say which stack: make failover STACK=prod" >&2; exit 1; }
sentinel=$(docker ps --filter "label=tally.stack=$STACK" --format '{{.ID}} {{.Label "tally.role"}}' |
	awk '$2 ~ /^sentinel-/ { print $1; exit }')
[ -n "$sentinel" ] || { echo "failover: no Sentinel of stack $STACK runs on ${DOCKER_HOST:-this engine} (a swarm stack with tally:redisReplicas; set DOCKER_HOST to a node of one)" >&2; exit 1; }
docker exec "$sentinel" sh -c "$(cat redis/failover.sh)" failover
