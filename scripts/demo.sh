#!/usr/bin/env bash
# Install, start the graph offline (configs/tiny.yaml: generated tiny models, CPU), send one audio
# file (default ../shared/fixtures/audio/jfk.flac) to POST /v1/transcribe, print the result, stop.
# The HTTP calls go through the venv's Python, so a bare machine needs nothing but python3 (with
# venv): no curl.
set -euo pipefail
cd "$(dirname "$0")/.."
audio="${1:-../shared/fixtures/audio/jfk.flac}"
[ -f "$audio" ] || { echo "demo.sh: no audio file at $audio; give one: bash scripts/demo.sh FILE" >&2; exit 1; }
[ "${SPEECHGRAPH_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install.sh
py=.venv/bin/python
url="http://127.0.0.1:8000"
log="$(mktemp -t speechgraph-serve.XXXXXX.log)"

# Exit status 0 when GET URL answers 200; with `any`, when anything answers at all.
probe() {
  "$py" -c '
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5)
except urllib.error.HTTPError:
    sys.exit(0 if sys.argv[2:] == ["any"] else 1)
except OSError:
    sys.exit(1)
' "$@"
}

if probe "$url/readyz" any; then
  echo "something already answers on $url; stop it first (a serve run left running?)" >&2; exit 1
fi
# Job control on: a background job of a script otherwise ignores SIGINT, and SIGINT is how
# `serve run` is asked to shut the graph and its local Ray cluster down cleanly.
set -m
.venv/bin/serve run configs/tiny.yaml >"$log" 2>&1 &
server=$!
set +m
stop() {
  kill -INT "$server" 2>/dev/null || return 0
  for _ in $(seq 1 60); do kill -0 "$server" 2>/dev/null || return 0; sleep 1; done
  kill -KILL "$server" 2>/dev/null || true
}
trap stop EXIT

echo "starting the graph (serve run configs/tiny.yaml; log: $log) ..." >&2
for _ in $(seq 1 300); do
  if ! kill -0 $server 2>/dev/null; then
    echo "serve run exited early; its log:" >&2; tail -n 50 "$log" >&2; exit 1
  fi
  probe "$url/readyz" && break
  sleep 1
done
probe "$url/readyz" || { echo "the graph did not become healthy in 300 s; log: $log" >&2; exit 1; }

echo "POST $url/v1/transcribe  file=$audio" >&2
"$py" -c '
import json, pathlib, sys, requests
url, path = sys.argv[1:]
with open(path, "rb") as f:
    r = requests.post(url, files={"file": (pathlib.Path(path).name, f)}, timeout=600)
if not r.ok:
    sys.exit(f"HTTP {r.status_code}: {r.text}")
print(json.dumps(r.json(), indent=4, ensure_ascii=False))
' "$url/v1/transcribe" "$audio"
