#!/usr/bin/env bash
# Runs a pulumi command on the tally stack (make deploy / preview / destroy /
# outputs). State goes to PULUMI_BACKEND_URL, by default a local file backend
# under ~/.pulumi-tally. The stack (STACK, default dev) is created on first
# use, with a generated Redis password stored as a secret.
set -euo pipefail
cd "$(dirname "$0")"

export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$HOME/.pulumi-tally}
STACK=${STACK:-dev}

command -v pulumi >/dev/null || {
	echo "this needs the pulumi CLI: https://www.pulumi.com/docs/install/ (then: pulumi plugin install resource docker v4.10.0)" >&2
	exit 1
}
case $PULUMI_BACKEND_URL in
file://*)
	mkdir -p "${PULUMI_BACKEND_URL#file://}" ;;
esac
# Self-managed backends encrypt secrets with a passphrase; Pulumi Cloud does not need one.
case $PULUMI_BACKEND_URL in
https://*) ;;
*)
	if [ -z "${PULUMI_CONFIG_PASSPHRASE-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE-}" ]; then
		echo "set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE): it encrypts this stack's secrets, such as the Redis password" >&2
		exit 1
	fi ;;
esac

if ! pulumi stack select "$STACK" >/dev/null 2>&1; then
	echo "creating stack $STACK in $PULUMI_BACKEND_URL" >&2
	pulumi stack init "$STACK" >&2
	pulumi config set --stack "$STACK" --secret tally:redisPassword \
		"$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >&2
fi
exec pulumi --stack "$STACK" "$@"
