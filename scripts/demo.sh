#!/usr/bin/env bash
# Install, start the graph offline (configs/tiny.yaml: generated tiny models, CPU), send one audio
# file (default ../shared/fixtures/audio/jfk.flac) to POST /v1/transcribe, print the result, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SPEECHGRAPH_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install.sh
audio="${1:-../shared/fixtures/audio/jfk.flac}"
url="http://127.0.0.1:8000"
log="$(mktemp -t speechgraph-serve.XXXXXX.log)"

if curl -s -o /dev/null "$url/readyz"; then
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
  curl -sf "$url/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -sf "$url/readyz" >/dev/null || { echo "the graph did not become healthy in 300 s; log: $log" >&2; exit 1; }

echo "POST $url/v1/transcribe  file=$audio" >&2
curl -sS --fail-with-body -F "file=@$audio" "$url/v1/transcribe" | .venv/bin/python -m json.tool
