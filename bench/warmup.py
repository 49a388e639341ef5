"""First request vs steady state: each replica runs a warm-up inference when it starts, so the first
real request should cost about what later ones do. Prints a table and writes its section of
BENCHMARKS.md.

    .venv/bin/python bench/warmup.py [--config configs/tiny.yaml] [--requests 10]

A fresh local Ray cluster and Serve application from the config; as soon as /readyz answers 200,
one 11 s clip (the shared JFK recording) is sent, then ``--requests`` more one after another. The
warm-up each replica did at start (``warmup_s`` in /v1/stages) is the cost the first request
would otherwise have paid.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import CLIP, ROOT, URL, app_args, config_line, machine, serve_and_measure, write_section


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "tiny.yaml")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    clip = CLIP.read_bytes()

    def one() -> float:
        started = time.perf_counter()
        r = requests.post(
            f"{URL}/v1/transcribe", files={"file": ("jfk.wav", clip)}, data={"language": "en"}, timeout=600
        )
        r.raise_for_status()
        return time.perf_counter() - started

    measured: dict = {}

    def work() -> list[float]:
        measured["first"] = one()
        measured["steady"] = [one() for _ in range(opts.requests)]
        measured["stages"] = requests.get(f"{URL}/v1/stages", timeout=60).json()["stages"]
        return []

    serve_and_measure(app_args(opts.config, asr_replicas=1, max_batch_size=8), work, warmup=lambda: None)
    steady = statistics.median(measured["steady"])
    warmups = ", ".join(
        f"{name} {info['warmup_s']:.2f} s"
        for name, info in measured["stages"].items()
        if info.get("warmup_s") is not None
    )
    text = "\n".join(
        [
            "## First request vs steady state (`bench/warmup.py`)",
            "",
            machine(),
            config_line(opts.config),
            f"Command: `.venv/bin/python bench/warmup.py --requests {opts.requests}`",
            "",
            "| request | wall s |",
            "| --- | ---: |",
            f"| first, right after /readyz | {measured['first']:.3f} |",
            f"| steady (median of the next {opts.requests}) | {steady:.3f} |",
            "",
            f"- first / steady: {measured['first'] / steady:.2f}x",
            f"- warm-up at replica start (paid before /readyz, not by a request): {warmups}",
            "",
        ]
    )
    print(text)
    write_section(opts.out, "warmup", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
