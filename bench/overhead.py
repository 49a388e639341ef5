"""Graph overhead: the same audio through the in-process runner (one Python process, no Ray, no
HTTP) and through HTTP + the Serve graph (ingress -> preprocess -> ASR, windows through the object
store), interleaved one request each in one run, so both see the same machine state. Prints
p50/p95 per path, the ratio and the milliseconds the graph adds; writes its section of
BENCHMARKS.md.

    .venv/bin/python bench/overhead.py [--requests 40]

No LLM calls on either path (punctuate and summarize off): the question is what Ray Serve and
HTTP cost around the same model work. Target on the 2-core machine: <= 15 ms added at p50.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (CLIP, ROOT, URL, bench_args, machine, models_line, serve_and_measure,  # noqa: E402
                           write_section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="per path (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    from pipeline.runner import InProcessPipeline
    from pipeline.settings import PipelineSettings

    args = bench_args(asr_replicas=1, max_batch_size=8)
    settings = PipelineSettings.model_validate({k: v for k, v in args.items() if k != "deployments"})
    clip = CLIP.read_bytes()
    times: dict[str, list[float]] = {"in-process runner": [], "HTTP + Serve graph": []}
    runner = InProcessPipeline(settings)

    def local() -> float:
        started = time.perf_counter()
        runner.transcribe(clip, language="en", punctuate=False, summarize=False)
        return time.perf_counter() - started

    def graph() -> float:
        started = time.perf_counter()
        r = requests.post(f"{URL}/v1/transcribe", files={"file": ("jfk.wav", clip)},
                          data={"language": "en", "punctuate": "false", "summarize": "false"}, timeout=600)
        r.raise_for_status()
        return time.perf_counter() - started

    def warmup() -> None:
        for _ in range(3):
            local(), graph()

    def work() -> list[float]:
        for _ in range(opts.requests):  # interleaved: one of each, in turn
            times["in-process runner"].append(local())
            times["HTTP + Serve graph"].append(graph())
        return []

    serve_and_measure(args, work, warmup)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    p95 = {k: float(np.percentile(v, 95)) for k, v in times.items()}
    added = (p50["HTTP + Serve graph"] - p50["in-process runner"]) * 1000
    ratio = p50["HTTP + Serve graph"] / p50["in-process runner"]
    rows = [f"| {k} | {p50[k] * 1000:.1f} ms | {p95[k] * 1000:.1f} ms |" for k in times]
    table = "\n".join(["| Path | p50 | p95 |", "| --- | ---: | ---: |", *rows])
    verdict = "within" if added <= 15 else "over"
    text = f"""## Graph overhead ({datetime.date.today().isoformat()})

{machine()}
{models_line()}
Command: `.venv/bin/python bench/overhead.py --requests {opts.requests}`. The shared 11 s JFK clip
(one window), punctuation and summary off, {opts.requests} requests per path, interleaved.

{table}

The graph adds **{added:.1f} ms** at p50 ({ratio:.2f}x the in-process time): {verdict} the 15 ms
target. It is HTTP parsing, the upload into the object store, two Serve handle calls (preprocess,
ASR) and the window crossing the object store, around the same model work.
"""
    print(text)
    write_section(opts.out, "overhead", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
