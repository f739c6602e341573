#!/usr/bin/env bash
# Install the load generator the benchmarks drive (wrk, from Debian's packages) when missing.
set -eu
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "wrk missing and not root: install Debian's 'wrk' package" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends wrk >/dev/null
