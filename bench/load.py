"""``python -m bench.load``: load a running speech-to-text service with one audio file, from N
clients at once, for a bounded time and request count, with a live progress line and a final table.

It speaks OpenAI's ``POST /v1/audio/transcriptions`` (multipart ``file`` + ``model``), so it loads
speechgraph or any OpenAI-compatible transcription server (speaches, vLLM's transcription
endpoint, ...) alike; ``--endpoint /v1/transcribe`` uses speechgraph's own route. It sends only to
the URL given, and stops at ``--duration`` seconds or ``--requests`` requests, whichever comes
first (requests still running then are waited for, up to ``--timeout``).

    python -m bench.load --url http://127.0.0.1:8000 --concurrency 8 --duration 30 --audio clip.wav
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass
class LoadResult:
    """What a load run measured."""

    concurrency: int
    audio_s: float
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    """Seconds of every answered (2xx) request."""
    statuses: Counter = field(default_factory=Counter)
    """Requests by HTTP status, or by client error name (``ReadTimeout``, ...)."""

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    @property
    def audio_s_per_s(self) -> float:
        return self.ok * self.audio_s / self.wall_s if self.wall_s else 0.0

    def table(self) -> str:
        errors = (
            ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=str) if k != 200) or "none"
        )
        rows = [
            ("concurrency", f"{self.concurrency}"),
            ("requests sent", f"{self.sent}"),
            ("answered (2xx)", f"{self.ok}"),
            ("not answered", errors),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("requests/s", f"{self.requests_per_s:.2f}"),
            ("audio seconds/s", f"{self.audio_s_per_s:.1f}"),
            (
                "latency p50 / p95 / p99",
                f"{self.percentile(50):.3f} / {self.percentile(95):.3f} / {self.percentile(99):.3f} s",
            ),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def audio_seconds(data: bytes) -> float:
    """The file's duration, decoded here the way the service decodes it."""
    from pipeline.audio import decode_audio

    return decode_audio(data, max_duration_s=24 * 3600).size / 16000


def run_load(
    url: str,
    data: bytes,
    filename: str,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    endpoint: str = "/v1/audio/transcriptions",
    model: str = "whisper-1",
    fields: dict | None = None,
    api_key: str | None = None,
    timeout_s: float = 300,
    progress: bool = True,
    audio_s: float | None = None,
) -> LoadResult:
    """Send ``data`` from ``concurrency`` clients until ``duration_s`` or ``max_requests``."""
    result = LoadResult(concurrency, audio_s if audio_s is not None else audio_seconds(data))
    form = {"model": model, **(fields or {})} if endpoint.startswith("/v1/audio") else dict(fields or {})
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    lock = threading.Lock()
    issued = 0
    started = time.monotonic()
    deadline = started + duration_s

    def take() -> bool:
        nonlocal issued
        with lock:
            if issued >= max_requests or time.monotonic() >= deadline:
                return False
            issued += 1
            return True

    def client() -> None:
        with requests.Session() as session:
            while take():
                t0 = time.monotonic()
                try:
                    r = session.post(
                        f"{url.rstrip('/')}{endpoint}",
                        files={"file": (filename, data)},
                        data=form,
                        headers=headers,
                        timeout=timeout_s,
                    )
                    status: int | str = r.status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with lock:
                    result.statuses[status] += 1
                    if isinstance(status, int) and 200 <= status < 300:
                        result.latencies.append(time.monotonic() - t0)

    def show_progress() -> None:
        elapsed = time.monotonic() - started
        with lock:
            p50 = f"{np.median(result.latencies):.3f} s" if result.latencies else "-"
            line = (
                f"\r{elapsed:6.1f} s  sent {result.sent}  ok {result.ok}  "
                f"errors {result.sent - result.ok}  {result.ok / elapsed:.2f} req/s  p50 {p50}   "
            )
        print(line, end="", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(0.5)
        if progress:
            show_progress()
    result.wall_s = time.monotonic() - started
    if progress:
        show_progress()  # the last requests may end after the last line: it shows the final counts
        print(file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--audio", required=True, type=Path, help="the audio file every request sends")
    parser.add_argument("--concurrency", type=int, default=4, help="clients at once (default: %(default)s)")
    parser.add_argument(
        "--duration", type=float, default=30, help="seconds to send for (default: %(default)s)"
    )
    parser.add_argument(
        "--requests", type=int, default=1000, help="most requests in all (default: %(default)s)"
    )
    parser.add_argument(
        "--endpoint",
        default="/v1/audio/transcriptions",
        help="the route (default: %(default)s; speechgraph's own: /v1/transcribe)",
    )
    parser.add_argument(
        "--model", default="whisper-1", help="the OpenAI 'model' field (default: %(default)s)"
    )
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another form field, e.g. --field language=en (repeatable)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SPEECHGRAPH_API_KEY"),
        help="bearer token (default: $SPEECHGRAPH_API_KEY)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds per request (default: %(default)s)"
    )
    options = parser.parse_args(argv)
    if options.concurrency < 1 or options.requests < 1 or options.duration <= 0:
        parser.error("--concurrency and --requests must be at least 1, --duration above 0")
    fields = dict(f.split("=", 1) for f in options.field)
    result = run_load(
        options.url,
        options.audio.read_bytes(),
        options.audio.name,
        concurrency=options.concurrency,
        duration_s=options.duration,
        max_requests=options.requests,
        endpoint=options.endpoint,
        model=options.model,
        fields=fields,
        api_key=options.api_key,
        timeout_s=options.timeout,
    )
    print(f"{options.audio.name} ({result.audio_s:.1f} s of audio) -> {options.url}{options.endpoint}")
    print(result.table())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
