"""Parts 3 and 5 of ``bench/preprocess.py``: the preprocess stage alone on Serve, driven as the
ingress drives it.

A local Ray cluster serves ``PreprocessDeployment`` (0.5 CPU a replica, no HTTP proxy) with 1, then
2 replicas. For each file, from this process's event loop: the bytes go into the object store in
4 MiB chunks (``Upload``, as ``TranscriptionGraph.upload`` writes them), the streamed ``plan`` reads the
header first, and ``AudioParts(...).stream()`` is consumed to its last part: chunks scanned across the
replicas for a long seekable file, one streamed ``plan`` front to back otherwise. The windows' refs
are dropped as they come, as ASR would fetch and drop them. Part 5 samples the (single) replica's
memory from ``/proc`` meanwhile (``tests/process_memory.py``), after ``malloc_trim`` in it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

APP = "preprocess-bench"
UPLOAD_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class Run:
    wall_s: float
    audio_s: float
    """How far the last part says the audio is planned: the decoded length."""
    windows: int
    chunked: bool
    replicas_used: int


@dataclass(frozen=True)
class Memory:
    heap_growth: int
    rss_growth: int
    run: Run


@dataclass
class StageResults:
    throughput: dict[int, dict[str, Run]] = field(default_factory=dict)
    """replicas -> file name -> run (median wall time)."""
    memory: dict[str, Memory] = field(default_factory=dict)


async def preprocess(handle: Any, settings: Any, data: bytes) -> Run:
    """One file through the stage: upload, probe, every part."""
    import ray

    from deployments.audio_parts import AudioParts
    from deployments.audio_plan import Upload

    started = time.perf_counter()
    view = memoryview(data)
    chunks = [
        ray.put(np.frombuffer(view[i : i + UPLOAD_CHUNK_BYTES], np.uint8))
        for i in range(0, len(data), UPLOAD_CHUNK_BYTES)
    ]
    upload = Upload(chunks=chunks, size=len(data))
    parts = AudioParts(handle, settings, upload, None)
    windows, planned_s = 0, 0.0
    async for part in parts.stream():
        windows, planned_s = windows + len(part.windows), part.planned_to_s
    chunked = parts.probe is not None and parts.probe.chunked(settings)
    return Run(time.perf_counter() - started, planned_s, windows, chunked, len(parts.replicas))


async def throughput(handle: Any, settings: Any, files: dict[str, Path], repeats: int) -> dict[str, Run]:
    """Median run per file; the files alternate within each repeat."""
    runs: dict[str, list[Run]] = {name: [] for name in files}
    for _ in range(repeats):
        for name, path in files.items():
            run = await preprocess(handle, settings, path.read_bytes())
            print(f"    {name}: {run.wall_s:.2f} s, {run.windows} windows", file=sys.stderr)
            runs[name].append(run)
    return {
        name: replace(found[0], wall_s=statistics.median(r.wall_s for r in found))
        for name, found in runs.items()
    }


async def memory_peaks(handle: Any, settings: Any, files: dict[str, Path]) -> dict[str, Memory]:
    from tests.process_memory import MemoryPeak, release_freed_memory, replica_pid

    pid = replica_pid("preprocess", app=APP)
    peaks = {}
    for name, path in files.items():
        data = path.read_bytes()
        release_freed_memory("preprocess", app=APP)
        with MemoryPeak(pid) as peak:
            run = await preprocess(handle, settings, data)
        peaks[name] = Memory(peak.heap_growth, peak.rss_growth, run)
        print(f"    {name}: heap +{peak.heap_growth / 2**20:.0f} MiB", file=sys.stderr)
    return peaks


async def warm_up(handle: Any, settings: Any, replicas: int) -> None:
    """Short files on every replica, so that no first call is timed."""
    from bench.harness import speech, wav_bytes

    short = wav_bytes(speech(30.0))
    for _ in range(2):
        await asyncio.gather(*(preprocess(handle, settings, short) for _ in range(2 * replicas)))


def measure_stage(
    settings: Any, config: Path, timed: dict[str, Path], peaks: dict[str, Path], repeats: int
) -> StageResults:
    """Part 3: the ``timed`` files with 1 and 2 replicas. Part 5: the ``peaks`` files, one replica."""
    import ray
    from ray import serve
    from ray.serve import Deployment

    from deployments.preprocess import PreprocessDeployment
    from pipeline.settings import serve_config_args

    options = serve_config_args(config)["deployments"]["preprocess"]
    results = StageResults()
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    try:
        serve.start(proxy_location="Disabled")
        for replicas in (1, 2) if timed else (1,):
            handle = serve.run(
                cast(Deployment, PreprocessDeployment)
                .options(
                    num_replicas=replicas,
                    max_ongoing_requests=options.get("max_ongoing_requests", 8),
                    ray_actor_options={"num_cpus": 0.5},
                )
                .bind(settings),
                name=APP,
                route_prefix=None,
            )
            asyncio.run(warm_up(handle, settings, replicas))
            if timed:
                print(f"  {replicas} replica(s):", file=sys.stderr)
                results.throughput[replicas] = asyncio.run(throughput(handle, settings, timed, repeats))
            if peaks and replicas == 1:
                print("  memory of one replica:", file=sys.stderr)
                results.memory = asyncio.run(memory_peaks(handle, settings, peaks))
            serve.delete(APP)
    finally:
        serve.shutdown()
        ray.shutdown()
    return results
