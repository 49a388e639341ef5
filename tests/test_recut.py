"""Windows lost with the replica that cut them: a window's ObjectRef is owned by the preprocessing
replica that put it in the object store, so it is gone if that replica dies before ASR fetched it.
The ingress then has the part's windows cut again from the upload, once per part, and sends the
lost windows again. Here on a real local Ray cluster with plain actors in the stages' places (the
timing of a replica kill between cutting and fetching cannot be hit reliably through HTTP)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import ray

from deployments.audio_plan import AudioPart
from deployments.http_errors import StageUnavailable
from deployments.stage_calls import RecutWindows
from pipeline.windows import Window


@ray.remote
class Cutter:
    """Puts windows in the object store, as a preprocessing replica does: it owns them."""

    def cut(self, windows: int, offset: int = 0) -> list:
        return [ray.put(np.full(4, i + offset, np.float32)) for i in range(windows)]


@ray.remote
def first_sample(window: np.ndarray) -> float:
    return float(window[0])


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def kill(cutter, refs: list) -> None:
    """Kill the actor that owns ``refs`` and wait until they are gone with it (freeing the
    objects of a dead owner is asynchronous)."""
    ray.kill(cutter)
    deadline = time.monotonic() + 60
    for ref in refs:
        while True:
            try:
                ray.get(ref, timeout=10)
            except ray.exceptions.ObjectLostError:
                break
            assert time.monotonic() < deadline, "the dead actor's objects are still there"
            time.sleep(0.2)


def plan_of(refs: list, windows: int) -> AudioPart:
    return AudioPart(
        windows=[Window(i, i * 100, i * 100 + 4, 16000) for i in range(windows)],
        refs=refs,
        planned_to_s=1.0,
        last=True,
    )


def test_windows_lost_with_their_owner_are_cut_again_once(local_ray):
    cutter = Cutter.remote()
    plan = plan_of(ray.get(cutter.cut.remote(3)), 3)
    kill(cutter, plan.refs)  # the owner of the windows dies before they were fetched
    cuts = []  # the cutters that cut again (kept: an actor whose handles are gone exits)

    async def cut_again() -> AudioPart:
        cuts.append(Cutter.remote())  # type: ignore[attr-defined]  # @ray.remote on a class: typed as the class
        return plan_of(await cuts[-1].cut.remote(3, offset=10), 3)

    windows = RecutWindows(plan, cut_again)

    async def run() -> list[float]:
        return await asyncio.gather(
            *(windows.call(i, first_sample.remote, f"window {i}", []) for i in range(3))
        )

    assert asyncio.run(run()) == [10.0, 11.0, 12.0], "each window, freshly cut"
    assert len(cuts) == 1, "cut again once for all three"


def test_windows_cut_differently_the_second_time_are_refused(local_ray):
    cutter = Cutter.remote()
    plan = plan_of(ray.get(cutter.cut.remote(2)), 2)
    kill(cutter, plan.refs)

    async def cut_again() -> AudioPart:
        # three windows instead of two; @ray.remote on a class is typed as the class
        return plan_of(await Cutter.remote().cut.remote(3), 3)  # type: ignore[attr-defined]

    with pytest.raises(StageUnavailable, match="cut differently"):
        asyncio.run(RecutWindows(plan, cut_again).call(0, first_sample.remote, "window 0", []))


def test_windows_still_there_are_not_cut_again(local_ray):
    cutter = Cutter.remote()
    plan = plan_of(ray.get(cutter.cut.remote(2, offset=5)), 2)

    async def cut_again() -> AudioPart:
        raise AssertionError("nothing was lost")

    assert asyncio.run(RecutWindows(plan, cut_again).call(1, first_sample.remote, "window 1", [])) == 6.0
