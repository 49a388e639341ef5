"""Peak memory of a Serve replica's process while a block of code runs, sampled from /proc.

Heap is RSS less the shared memory of Ray's object store (``RssShmem``): the kernel counts those
pages in the RSS of every process that touched them, and Ray's memory-management guide says to
subtract them, or object-store memory is counted once per worker. Both are kept.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil


def replica_pid(deployment: str, app: str = "speechgraph") -> int:
    """The process id of the (first) replica of ``deployment``."""
    marker = f"ServeReplica:{app}:{deployment}"
    return next(
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(marker in part for part in p.info["cmdline"] or [])
    )


def replica_pids(deployment: str, app: str = "speechgraph") -> list[int]:
    """The process ids of every replica of ``deployment``."""
    marker = f"ServeReplica:{app}:{deployment}"
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(marker in part for part in p.info["cmdline"] or [])
    ]


def read_memory(status: Path) -> tuple[int, int]:
    """(heap, RSS) in bytes of the process whose ``/proc/PID/status`` is ``status``."""
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    kib = {k: int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile", "RssShmem")}
    heap = kib["RssAnon"] + kib["RssFile"]
    return heap, heap + kib["RssShmem"]


def heap_bytes(pid: int) -> int:
    """RSS less object-store pages, now."""
    return read_memory(Path(f"/proc/{pid}/status"))[0]


def release_freed_memory(deployment: str, app: str = "speechgraph") -> None:
    """Run glibc's ``malloc_trim(0)`` inside the (first) replica of ``deployment``, through Ray's
    ``__ray_call__``: memory that was freed but that the allocator kept in its per-thread arenas
    goes back to the OS, so the heap read next is what the process still uses. A leak survives
    this; allocator retention does not."""
    import ctypes

    import ray

    actor = next(
        a for a in ray.util.list_named_actors(all_namespaces=True) if f"{app}#{deployment}#" in a["name"]
    )
    handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
    ray.get(handle.__ray_call__.remote(lambda replica: ctypes.CDLL("libc.so.6").malloc_trim(0)), timeout=30)


class MemoryPeak:
    """``with MemoryPeak(pid) as peak: ...``, then ``peak.heap_growth`` and ``peak.rss_growth``
    (bytes over the values when the block started), sampled every 10 ms."""

    def __init__(self, pid: int):
        self.status = Path(f"/proc/{pid}/status")
        self.heap_base, self.rss_base = self._read()
        self.heap_peak, self.rss_peak = self.heap_base, self.rss_base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> tuple[int, int]:
        return read_memory(self.status)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            heap, rss = self._read()
            self.heap_peak, self.rss_peak = max(self.heap_peak, heap), max(self.rss_peak, rss)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def heap_growth(self) -> int:
        return self.heap_peak - self.heap_base

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_base
