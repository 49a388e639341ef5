"""Throughput: a concurrency sweep (1, 2, 4, 8, 16 clients) against the graph, with ASR batching
off (``max_batch_size`` 1) and on (8), a bounded number of requests per step. Prints requests/s,
audio seconds/s and p50/p95/p99 per step, and batching's speed-up; writes its section of
BENCHMARKS.md. The load comes from ``bench.load`` (the same tool users run).

    .venv/bin/python bench/throughput.py [--requests-per-client 6]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    CLIP,
    ROOT,
    URL,
    bench_args,
    machine,
    models_line,
    serve_and_measure,
    write_section,
)
from bench.load import LoadResult, audio_seconds, run_load

CONCURRENCY = [1, 2, 4, 8, 16]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests-per-client",
        type=int,
        default=6,
        help="requests per step: this times the concurrency, at least 8 (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    clip = CLIP.read_bytes()
    clip_s = audio_seconds(clip)
    results: dict[int, dict[int, LoadResult]] = {}
    for batch in (1, 8):

        def work(batch: int = batch) -> list[float]:
            results[batch] = {}
            for concurrency in CONCURRENCY:
                results[batch][concurrency] = run_load(
                    URL,
                    clip,
                    "jfk.wav",
                    concurrency=concurrency,
                    duration_s=600,
                    max_requests=max(8, opts.requests_per_client * concurrency),
                    endpoint="/v1/transcribe",
                    fields={"language": "en", "punctuate": "false", "summarize": "false"},
                    audio_s=clip_s,
                )
                print(f"batch {batch}, concurrency {concurrency}:\n{results[batch][concurrency].table()}\n")
            return []

        serve_and_measure(
            bench_args(asr_replicas=1, max_batch_size=batch),
            work,
            lambda: run_load(
                URL,
                clip,
                "jfk.wav",
                concurrency=2,
                duration_s=60,
                max_requests=4,
                endpoint="/v1/transcribe",
                fields={"language": "en"},
                progress=False,
                audio_s=clip_s,
            ),
        )
    rows = []
    for concurrency in CONCURRENCY:
        for batch in (1, 8):
            r = results[batch][concurrency]
            failed = r.sent - r.ok
            rows.append(
                f"| {concurrency} | {'on (8)' if batch == 8 else 'off (1)'} | {r.ok}"
                f"{f' (+{failed} failed)' if failed else ''} | {r.requests_per_s:.2f} | "
                f"{r.audio_s_per_s:.1f} | "
                f"{r.percentile(50):.2f} | {r.percentile(95):.2f} | {r.percentile(99):.2f} |"
            )
    speedup = [
        f"{c}: {results[8][c].requests_per_s / results[1][c].requests_per_s:.2f}x" for c in CONCURRENCY
    ]
    text = f"""## Throughput ({datetime.date.today().isoformat()})

{machine()}
{models_line()}
Command: `.venv/bin/python bench/throughput.py --requests-per-client {opts.requests_per_client}`. One ASR
replica; each request is the shared 11 s JFK clip (one window), punctuation and summary off; each
step sends {opts.requests_per_client} requests per client (at least 8) through `bench.load`.

| Clients | Batching | Answered | Requests/s | Audio s/s | p50 (s) | p95 (s) | p99 (s) |
| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Batching's speed-up in requests/s, by clients: {", ".join(speedup)}.
"""
    print(text)
    write_section(opts.out, "throughput", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
