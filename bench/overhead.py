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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40, help="per path (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    from pipeline.runner import InProcessPipeline
    from pipeline.settings import PipelineSettings

    args = bench_args(asr_replicas=1, max_batch_size=8)
    settings = PipelineSettings.model_validate({k: v for k, v in args.items() if k != "deployments"})
    clip = CLIP.read_bytes()
    paths = ("in-process runner", "HTTP + Serve graph")
    # Per request: wall seconds, and the preprocess and ASR seconds the document reports.
    times: dict[str, list[tuple[float, float, float]]] = {path: [] for path in paths}
    runner = InProcessPipeline(settings)

    def local() -> tuple[float, float, float]:
        started = time.perf_counter()
        doc = runner.transcribe(clip, language="en", punctuate=False, summarize=False)
        return time.perf_counter() - started, doc.timings.preprocess_s, doc.timings.asr_s

    def graph() -> tuple[float, float, float]:
        started = time.perf_counter()
        r = requests.post(
            f"{URL}/v1/transcribe",
            files={"file": ("jfk.wav", clip)},
            data={"language": "en", "punctuate": "false", "summarize": "false"},
            timeout=600,
        )
        r.raise_for_status()
        timings = r.json()["timings"]
        return time.perf_counter() - started, timings["preprocess_s"], timings["asr_s"]

    def warmup() -> None:
        for _ in range(3):
            local(), graph()

    def work() -> list[float]:
        for _ in range(opts.requests):  # interleaved: one of each, in turn
            times[paths[0]].append(local())
            times[paths[1]].append(graph())
        return []

    serve_and_measure(args, work, warmup)

    def median(path: str, column: int) -> float:
        return statistics.median(t[column] for t in times[path]) * 1000

    p95 = {path: float(np.percentile([t[0] for t in times[path]], 95)) * 1000 for path in paths}
    paired = statistics.median(
        (remote[0] - here[0]) * 1000 for here, remote in zip(times[paths[0]], times[paths[1]], strict=True)
    )
    added = median(paths[1], 0) - median(paths[0], 0)
    ratio = median(paths[1], 0) / median(paths[0], 0)
    rows = [
        f"| {path} | {median(path, 0):.1f} ms | {p95[path]:.1f} ms | {median(path, 1):.1f} ms | "
        f"{median(path, 2):.1f} ms |"
        for path in paths
    ]
    table = "\n".join(
        ["| Path | p50 | p95 | preprocess p50 | ASR p50 |", "| --- | ---: | ---: | ---: | ---: |", *rows]
    )
    verdict = "within" if added <= 15 else "over"
    text = f"""## Graph overhead ({datetime.date.today().isoformat()})

{machine()}
{models_line()}
Command: `.venv/bin/python bench/overhead.py --requests {opts.requests}`. The shared 11 s JFK clip
(one window), punctuation and summary off, {opts.requests} requests per path, interleaved. Stage
columns: the seconds each document reports (the graph's as its driver saw them, queueing included).

{table}

The graph adds **{added:.1f} ms** at p50 ({ratio:.3f}x the in-process time; the median of the
paired differences, request by request, is {paired:.1f} ms): {verdict} the 15 ms target. What it
adds is HTTP parsing and the upload into the object store (outside the stage columns), two Serve
handle calls and the window crossing the object store, around the same model work; the model
work itself varies by tens of milliseconds from request to request on this 2-core machine.
"""
    print(text)
    write_section(opts.out, "overhead", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
