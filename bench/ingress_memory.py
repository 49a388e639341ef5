"""The ingress replica's memory, before and after it stopped importing model libraries.

The ingress holds no model, but it used to import torch and transformers through the pipeline
modules it shared with the stages. This serves the tiny graph twice in one run, from a checkout of
``--before`` (a git revision, checked out into a temporary worktree) and from this tree, sends the
same requests to each, and reads the ingress replica's memory from ``/proc``: heap (RSS less the
object store's shared pages, as Ray's memory guide measures a worker), and whether libtorch is
mapped into the process at all. Writes its section of BENCHMARKS.md.

    .venv/bin/python bench/ingress_memory.py [--before 8ce0192] [--requests 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
CLIP = ROOT.parent / "shared" / "fixtures" / "audio" / "jfk.wav"
URL = "http://127.0.0.1:8000"


def measure(tree: Path, requests_count: int) -> dict:
    """Serve ``tree``'s configs/tiny.yaml (its own code: PYTHONPATH points at it, for the driver
    and every Ray worker), send requests, read the ingress replica's memory."""
    import psutil
    import ray
    import requests
    import yaml
    from ray import serve

    from deployments.app import build_app

    args = yaml.safe_load((tree / "configs" / "tiny.yaml").read_text())["applications"][0]["args"]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": 8000})
        serve.run(build_app(args), name="speechgraph", route_prefix="/")
        deadline = time.monotonic() + 300
        while requests.get(f"{URL}/readyz", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("the graph did not become healthy")
            time.sleep(0.5)
        form = {"language": "en", "punctuate": "false", "summarize": "false"}
        for _ in range(requests_count):
            with CLIP.open("rb") as f:
                r = requests.post(f"{URL}/v1/transcribe", files={"file": f}, data=form, timeout=120)
            r.raise_for_status()
        pid = next(
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if any("ServeReplica:speechgraph:ingress" in part for part in p.info["cmdline"] or [])
        )
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        kib = {k: int(status[k].split()[0]) for k in ("RssAnon", "RssFile", "RssShmem")}
        maps = Path(f"/proc/{pid}/maps").read_text()
        return {
            "heap_mib": (kib["RssAnon"] + kib["RssFile"]) / 1024,
            "anon_mib": kib["RssAnon"] / 1024,
            "libtorch": "libtorch" in maps,
            "transformers": "/transformers/" in maps,
        }
    finally:
        serve.shutdown()
        ray.shutdown()


def measure_in_subprocess(tree: Path, requests_count: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(HERE), "--measure", str(tree), "--requests", str(requests_count)]
    out = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"measuring {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="8ce0192", help="git revision of the 'before' ingress")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.measure:
        print(json.dumps(measure(opts.measure, opts.requests)))
        return

    sys.path.insert(0, str(ROOT))
    from bench.harness import machine, write_section

    with tempfile.TemporaryDirectory() as tmp:
        before_tree = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before_tree), opts.before], cwd=ROOT, check=True
        )
        try:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(opts.repeats):  # alternated, so drift affects both alike
                runs["before"].append(measure_in_subprocess(before_tree, opts.requests))
                runs["after"].append(measure_in_subprocess(ROOT, opts.requests))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT, check=True)

    rows = {}
    for name, samples in runs.items():
        rows[name] = {
            "heap": statistics.median(s["heap_mib"] for s in samples),
            "anon": statistics.median(s["anon_mib"] for s in samples),
            "libtorch": all(s["libtorch"] for s in samples),
            "any_libtorch": any(s["libtorch"] for s in samples),
        }
    ratio = rows["before"]["heap"] / rows["after"]["heap"]
    lines = [
        "| ingress replica | heap MiB (median) | anonymous MiB | libtorch mapped |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, label in (("before", f"before (`{opts.before}`)"), ("after", "after (this tree)")):
        row = rows[name]
        mapped = "yes" if row["libtorch"] else ("in some runs" if row["any_libtorch"] else "no")
        lines.append(f"| {label} | {row['heap']:.0f} | {row['anon']:.0f} | {mapped} |")
    table = "\n".join(lines)
    print(table)
    print(f"before / after heap: {ratio:.2f}x")
    write_section(
        ROOT / "BENCHMARKS.md",
        "ingress-memory",
        f"""## Ingress memory: a driver without model libraries

Measured {datetime.date.today()} with `.venv/bin/python bench/ingress_memory.py --before {opts.before}
--requests {opts.requests} --repeats {opts.repeats}`. {machine()} Config: each tree's own
`configs/tiny.yaml`, served in turn on a local Ray cluster; the ingress replica read from `/proc`
after {opts.requests} requests (`jfk.wav`, no LLM). Heap is RSS less the object store's shared
pages; medians of {opts.repeats} runs each, alternated.

{table}

The ingress replica's heap is {ratio:.2f}x smaller once it imports neither torch nor transformers.
""",
    )


if __name__ == "__main__":
    main()
