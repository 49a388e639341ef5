#!/usr/bin/env bash
# Debian packages the tests use: espeak-ng (synthetic speech for long-audio tests), sox, and
# prometheus (a real Prometheus server and promtool for the observability tests).
# Installs only what is missing; uses sudo when not root.
set -euo pipefail
missing=()
for pkg in espeak-ng sox prometheus; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
