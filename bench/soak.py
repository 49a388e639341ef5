"""Soak: steady load for ``--minutes`` (10 by default) against the tiny graph, then a short idle.
The object store's used memory is read before and after (Ray issues #43248 and #44673: objects
passed between deployments of a composed app never freed), and every replica's heap (RSS less
object-store pages) is sampled through the run and fitted with a line: a leak grows steadily.
Each sample is read twice: as the process holds it, then after glibc's ``malloc_trim(0)`` ran in
the replica (through Ray's ``__ray_call__``). The first includes freed memory the allocator keeps
in its arenas, which wanders with batch shapes; the second is what the process uses, and is where
a leak shows.
Writes its section of BENCHMARKS.md. tests/test_leaks.py is the short version in CI (its heap check
runs on requests sent one at a time; its docstring says why).

    .venv/bin/python bench/soak.py [--minutes 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import CLIP, ROOT, URL, app_args, machine, serve_and_measure, write_section

STAGES = ("ingress", "preprocess", "asr", "postprocess")


def object_store() -> tuple[float, int]:
    """(MiB used, objects), as ``ray memory --stats-only`` reports them."""
    from ray._private.internal_api import memory_summary

    match = re.search(
        r"Plasma memory usage (\d+(?:\.\d+)?) MiB, (\d+) objects", memory_summary(stats_only=True)
    )
    if match is None:
        raise RuntimeError("Ray's memory summary has no 'Plasma memory usage' line: update object_store()")
    return float(match[1]), int(match[2])


def heap_mib(pid: int) -> float:
    """RSS less object-store pages (Ray's memory guide: RSS - SHR)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return sum(int(fields[k].split()[0]) for k in ("RssAnon", "RssFile")) / 1024


def release_freed_memory(stage: str) -> None:
    """``malloc_trim(0)`` inside the replica of ``stage``: freed memory goes back to the OS."""
    import ray

    actor = next(
        a for a in ray.util.list_named_actors(all_namespaces=True) if f"speechgraph#{stage}#" in a["name"]
    )
    handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
    ray.get(handle.__ray_call__.remote(lambda replica: ctypes.CDLL("libc.so.6").malloc_trim(0)), timeout=30)


def replica_pids() -> dict[str, int]:
    pids: dict[str, int] = {}
    for p in psutil.process_iter(["cmdline"]):
        for stage in STAGES:
            if any(f"ServeReplica:speechgraph:{stage}" in part for part in p.info["cmdline"] or []):
                pids.setdefault(stage, p.pid)
    return pids


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    clip = CLIP.read_bytes()
    args = app_args(ROOT / "configs" / "tiny.yaml", asr_replicas=1, max_batch_size=8)
    for stage in ("preprocess",):  # fixed replicas: the same processes all along
        args["deployments"][stage].pop("autoscaling_config", None)
        args["deployments"][stage]["num_replicas"] = 1
    measured: dict = {}

    def send() -> int:
        r = requests.post(
            f"{URL}/v1/transcribe",
            files={"file": ("jfk.wav", clip)},
            data={"language": "en", "summarize": "true"},
            timeout=120,
        )
        return r.status_code

    def work() -> list[float]:
        for _ in range(20):
            send()
        time.sleep(5)
        measured["before"] = object_store()
        pids = replica_pids()
        statuses: list[int] = []
        heap: dict[str, list[tuple[float, float, float]]] = {stage: [] for stage in pids}
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                statuses.append(send())

        threads = [threading.Thread(target=client, daemon=True) for _ in range(opts.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while time.monotonic() - started < opts.minutes * 60:
            time.sleep(10)
            for stage, pid in pids.items():
                held = heap_mib(pid)
                release_freed_memory(stage)
                heap[stage].append((len(statuses), held, heap_mib(pid)))
            print(f"\r{time.monotonic() - started:5.0f} s  {len(statuses)} requests", end="", file=sys.stderr)
        stop.set()
        for thread in threads:
            thread.join(130)
        time.sleep(10)
        measured.update(after=object_store(), statuses=statuses, heap=heap)
        return []

    serve_and_measure(args, work, send)
    statuses, heap = measured["statuses"], measured["heap"]
    rows = []
    for stage, samples in heap.items():
        n, held, used = (np.array([s[i] for s in samples]) for i in range(3))
        rows.append(
            f"| {stage} | {used[0]:.0f} | {used[-1]:.0f} | {np.polyfit(n, used, 1)[0] * 1000:+.2f} "
            f"| {np.polyfit(n, held, 1)[0] * 1000:+.2f} |"
        )
    before, after = measured["before"], measured["after"]
    command = f".venv/bin/python bench/soak.py --minutes {opts.minutes:g} --clients {opts.clients}"
    header = (
        "| Replica | Heap at start (MiB) | Heap at end (MiB) | Fitted growth (MiB per 1000 requests) "
        "| Before trim: fitted growth |"
    )
    text = f"""## Soak ({datetime.date.today().isoformat()})

{machine()}
Command: `{command}`. Tiny models, one
replica per stage; {opts.clients} clients send the 11 s JFK clip (punctuated and summarised) one request after
another for {opts.minutes:g} minutes: {len(statuses)} requests, {statuses.count(200)} answered 200.

Object store: {before[0]:.1f} MiB in {before[1]} objects before, {after[0]:.1f} MiB in {after[1]} objects
10 s after the load.

Heap is RSS less object-store pages, read every 10 s after `malloc_trim(0)` in the replica; the last
column is the same fit on the heap as read just before each trim (freed memory the allocator kept
since the previous trim included).

{header}
| --- | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}
"""
    print(text)
    write_section(opts.out, "soak", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
