#!/usr/bin/env bash
# The Debian packages some tests run: espeak-ng (synthetic speech for the long-audio test) and
# prometheus (a real Prometheus server, and promtool, for the observability tests), gcc
# (webrtcvad, which Resemblyzer's wheel requires, has only a source release) and chromium (the web
# page's tests drive Debian's Chromium with Playwright; no browser is downloaded). Installs only
# what is missing, with apt-get (through sudo when not root). Exits non-zero, saying what to install
# by hand, where it cannot: the caller decides whether to go on (scripts/test.sh does; the tests
# that need a missing tool then skip, naming its package).
set -euo pipefail
missing=""
for tool_package in espeak-ng:espeak-ng prometheus:prometheus promtool:prometheus gcc:gcc chromium:chromium; do
  tool="${tool_package%%:*}" package="${tool_package#*:}"
  command -v "$tool" >/dev/null 2>&1 && continue
  case " $missing " in *" $package "*) ;; *) missing="${missing:+$missing }$package" ;; esac
done
[ -z "$missing" ] && exit 0

cannot() {
  echo "system-deps.sh: cannot install $missing: $1." >&2
  echo "  Install by hand (Debian/Ubuntu: sudo apt-get install $missing); until then the tests" >&2
  echo "  that need them skip, each naming its package." >&2
  exit 1
}
command -v apt-get >/dev/null 2>&1 || cannot "no apt-get here (not Debian or Ubuntu)"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || cannot "not root, and no sudo"
  sudo=sudo
fi
echo "system-deps.sh: installing $missing with apt-get ..." >&2
$sudo apt-get update -q || cannot "apt-get update failed (see above)"
# shellcheck disable=SC2086  # $missing is a list of package names
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing ||
  cannot "apt-get install failed (see above)"
