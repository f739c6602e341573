#!/usr/bin/env bash
# Install Debian's Chromium when it is missing: the console's browser tests drive it through
# Playwright (executable_path), since browsers cannot be downloaded by Playwright here.
set -eu
if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium missing and not root: install 'chromium'" >&2
  exit 0
fi
echo "installing chromium from Debian's package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
