"""Windows reach ASR whatever happens to the preprocessing replica that cut them: their samples
travel inside the stage's streamed answer, which the driver that asked owns, rather than as refs
the replica put. Ray loses count of refs nested in a streamed answer (ray-project/ray#58080);
with those, some windows were freed before ASR fetched them, and Serve answers every call through
a streaming generator. Here on a real local Ray cluster with plain actors in the stages' places:
the cutter streams parts as a preprocessing replica does, the consumer reads windows as ASR does.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import ray

from deployments.audio_plan import AudioPart
from pipeline.windows import Window

WINDOW = 8_000  # samples: half a second, so each part is too big to travel inline (over 100 KB)


@ray.remote
class Cutter:
    """Streams parts of windows, as a preprocessing replica's ``plan`` does."""

    def plan(self, parts: int, per_part: int):
        for p in range(parts):
            first = p * per_part
            yield AudioPart(
                windows=[
                    Window(i, i * WINDOW, (i + 1) * WINDOW, 16000) for i in range(first, first + per_part)
                ],
                samples=[np.full(WINDOW, i, np.float32) for i in range(first, first + per_part)],
                planned_to_s=(first + per_part) * WINDOW / 16000,
                last=p == parts - 1,
            )


@ray.remote
class Consumer:
    """Reads a window's samples, as an ASR replica does."""

    def first_sample(self, samples: np.ndarray) -> float:
        return float(samples[0])


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@ray.remote
class Driver:
    """Relays windows from a cutter to a consumer, as the ingress does (an actor as well)."""

    async def relay(self, parts: int, per_part: int, kill_cutter: bool) -> list[float]:
        """Stream the parts from a cutter and send each window on to a consumer: as each part
        arrives, or, if ``kill_cutter``, once all are in and the cutter is dead. The first
        sample of each window, in order."""
        cutter, consumer = Cutter.remote(), Consumer.remote()  # type: ignore[attr-defined]  # @ray.remote class
        held, calls = [], []
        async for item in cutter.plan.options(num_returns="streaming").remote(parts, per_part):
            part: AudioPart = await item
            assert len(part.samples) == len(part.windows) == per_part
            if kill_cutter:
                held += part.samples
            else:
                calls += [consumer.first_sample.remote(samples) for samples in part.samples]
        if kill_cutter:
            ray.kill(cutter)
            await asyncio.sleep(1.0)
            calls = [consumer.first_sample.remote(samples) for samples in held]
        return await asyncio.gather(*calls)


def relay(parts: int, per_part: int, kill_cutter: bool = False) -> list[float]:
    driver = Driver.remote()  # type: ignore[attr-defined]  # @ray.remote class
    return ray.get(driver.relay.remote(parts, per_part, kill_cutter), timeout=120)


def test_every_streamed_window_reaches_the_consumer(local_ray):
    # ray-project/ray#58080's case: with refs the cutter put, a few in every hundred were lost here
    for _ in range(3):
        firsts = relay(parts=100, per_part=5)
        assert firsts == [float(i) for i in range(500)]


def test_windows_outlive_the_replica_that_cut_them(local_ray):
    firsts = relay(parts=3, per_part=4, kill_cutter=True)
    assert firsts == [float(i) for i in range(12)]
