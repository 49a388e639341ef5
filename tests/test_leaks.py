"""Leaks: after many requests and a short idle, the object store holds what it held before (Ray
issues #43248 and #44673 are this failure in composed apps: objects passed between deployments
never freed), and no replica's heap grows steadily with the requests (a linear fit of samples).

The heap is checked on requests sent one after another, read after ``malloc_trim`` in the
replica; the object store after those and then concurrent traffic, when objects cross between
deployments while others are in flight. Both choices are measured:
- untrimmed, glibc keeps freed memory in per-thread arenas and the amount wanders by tens of MiB
  (ASR +44 MiB fitted over 150 requests, with no leak);
- under 4 concurrent clients, even the trimmed ASR heap grew (+70 to +93 MiB over 150-360
  requests, flat in other runs), while over 200 requests sent one at a time it stayed within
  322-330 MiB. Memory kept per request (a leak in our code) grows with the
  request count either way; growth that needs concurrent, varying batches is the allocator's or
  the native libraries' working set. bench/soak.py measures the concurrent case over 10 minutes.
The trimmed one-at-a-time ASR heap still wanders: +8 MiB fitted over the 100 requests in one run
and +32 MiB in another on a fresh CI machine (ASR's code unchanged between them), so the bound is
8% of the heap (about 45 MiB for the tiny models). A leak of 1 MiB per window planted in the ASR
deployment fails this test (+196 MiB fitted over the 100 requests); one of 200 KiB per window
(+25 MiB) is within the noise and does not."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests
from audio_files import encode, speech_and_silence
from process_memory import heap_bytes, release_freed_memory, replica_pid

CONCURRENT_REQUESTS = 60
REQUESTS = 100  # one after another, for the heap
SAMPLE_EVERY = 10
STAGES = ("ingress", "preprocess", "asr", "postprocess")


def object_store() -> tuple[float, int]:
    """(MiB used, objects) in the object store, as ``ray memory --stats-only`` reports them."""
    from ray._private.internal_api import memory_summary

    summary = memory_summary(stats_only=True)
    match = re.search(r"Plasma memory usage (\d+(?:\.\d+)?) MiB, (\d+) objects", summary)
    assert match, summary
    return float(match[1]), int(match[2])


def settled_object_store(timeout_s: float = 30) -> tuple[float, int]:
    """The object store once two readings a second apart agree (frees are asynchronous)."""
    deadline = time.monotonic() + timeout_s
    previous = object_store()
    while time.monotonic() < deadline:
        time.sleep(1)
        current = object_store()
        if current == previous:
            return current
        previous = current
    return previous


def test_many_requests_leave_no_objects_and_no_growing_heap(graph) -> None:
    data = encode(speech_and_silence("jfk", 3.0, "jfk"), 16000, "flac")  # two windows

    def send(_) -> int:
        r = requests.post(
            f"{graph}/v1/transcribe",
            files={"file": ("two.flac", data)},
            data={"summarize": "true"},
            timeout=120,
        )
        return r.status_code

    with ThreadPoolExecutor(4) as pool:  # warm up: allocators and caches reach their working size
        assert set(pool.map(send, range(20))) == {200}
    baseline = settled_object_store()
    pids = {stage: replica_pid(stage) for stage in STAGES}
    heap: dict[str, list[int]] = {stage: [] for stage in STAGES}
    untrimmed: dict[str, list[int]] = {stage: [] for stage in STAGES}
    done = []
    for start in range(0, REQUESTS, SAMPLE_EVERY):
        statuses = [send(i) for i in range(SAMPLE_EVERY)]
        assert set(statuses) == {200}, statuses
        done.append(start + SAMPLE_EVERY)
        for stage, pid in pids.items():
            untrimmed[stage].append(heap_bytes(pid))
            release_freed_memory(stage)
            heap[stage].append(heap_bytes(pid))
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(send, range(CONCURRENT_REQUESTS)))
    assert set(statuses) == {200}, statuses
    after = settled_object_store()
    print(
        f"object store: {baseline[0]:.1f} MiB, {baseline[1]} objects before; "
        f"{after[0]:.1f} MiB, {after[1]} objects after {CONCURRENT_REQUESTS + REQUESTS} requests"
    )
    assert after[0] <= baseline[0] * 1.05 + 0.5, (baseline, after)
    assert after[1] <= baseline[1] + 2, (baseline, after)
    for stage, samples in heap.items():
        slope = np.polyfit(done, samples, 1)[0]  # bytes per request
        growth = slope * REQUESTS
        print(
            f"{stage}: heap {samples[0] / 2**20:.0f} -> {samples[-1] / 2**20:.0f} MiB, "
            f"fitted growth {growth / 2**20:+.1f} MiB over {REQUESTS} requests "
            f"(before each trim: {untrimmed[stage][0] / 2**20:.0f} -> {untrimmed[stage][-1] / 2**20:.0f} MiB)"
        )
        assert growth < max(16 * 2**20, 0.08 * samples[0]), f"{stage}'s heap grows with requests"
