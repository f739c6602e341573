#!/usr/bin/env bash
# Install nginx from Debian's package when it is missing (the native stack's load balancer).
# Only the binary is needed: `make stack` runs its own nginx on loopback; nothing is started
# here, and the package's own service is stopped again if installing started it.
set -eu
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "nginx missing and not root: install 'nginx'" >&2
  exit 0
fi
echo "installing nginx from Debian's package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nginx >/dev/null
if command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
