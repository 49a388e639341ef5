#!/usr/bin/env bash
# The README's test command: the Debian packages the tests run (scripts/system-deps.sh), the venv
# (scripts/install.sh), then the whole suite; extra arguments go to pytest. Where the packages
# cannot be installed (not root and no sudo, apt failing) it goes on, and the tests that need them
# skip, each naming its package (under CI, which must run everything, they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh ||
  echo "test.sh: going on without those packages; the tests that need them will skip" >&2
bash scripts/install.sh
# As with the venv activated: tools that pip installs into it (kubectl, from the test extra).
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m pytest "$@"
