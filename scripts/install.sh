#!/usr/bin/env bash
# Create .venv and install speechgraph with its test and lint extras. torch==2.13.0 goes in first:
# on these machines it is a local CPU wheel, and once it is there the project's torch range is
# satisfied, so pip never pulls a CUDA build (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  command -v python3 >/dev/null 2>&1 || { echo "install.sh: no python3 on PATH; install Python 3.11 or newer" >&2; exit 1; }
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { echo "install.sh: python3 is $(python3 -V 2>&1); speechgraph needs 3.11 or newer" >&2; exit 1; }
  # Debian splits venv's pip bootstrap (ensurepip) into its own package.
  python3 -c 'import ensurepip, venv' 2>/dev/null ||
    { echo "install.sh: python3 cannot create a virtual environment (no ensurepip); on Debian/Ubuntu: sudo apt-get install python3-venv" >&2; exit 1; }
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test,lint]"
