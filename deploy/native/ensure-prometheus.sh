#!/usr/bin/env bash
# Install Prometheus, promtool and Alertmanager from Debian's packages when they are missing.
# The tests start their own instances on loopback; nothing is started here.
set -eu
if command -v prometheus >/dev/null && command -v promtool >/dev/null \
  && command -v prometheus-alertmanager >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "prometheus/alertmanager missing and not root: install 'prometheus prometheus-alertmanager'" >&2
  exit 0
fi
echo "installing prometheus and prometheus-alertmanager from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
