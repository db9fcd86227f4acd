#!/usr/bin/env bash
# Installs the deploy key and the Docker host's known_hosts entry from the
# repository secrets, for ssh:// Docker hosts; does nothing without a key.
set -euo pipefail
[ -n "${KEY:-}" ] || exit 0
install -d -m 700 ~/.ssh
printf '%s\n' "$KEY" > ~/.ssh/id_ed25519
chmod 600 ~/.ssh/id_ed25519
if [ -n "${KNOWN_HOSTS:-}" ]; then
	printf '%s\n' "$KNOWN_HOSTS" >> ~/.ssh/known_hosts
else
	echo "::warning::DOCKER_SSH_KNOWN_HOSTS is not set; ssh will refuse an unknown host"
fi
