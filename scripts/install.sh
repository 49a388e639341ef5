#!/usr/bin/env bash
# Create .venv and install speechgraph with its test extra. torch==2.13.0 goes in first: on these
# machines it is a local CPU wheel, and once it is there the project's torch range is satisfied,
# so pip never pulls a CUDA build (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
