"""Autoscaling under a load burst (configs/autoscaling-demo.yaml: ASR 1..3 replicas, up 2 s and
down 10 s after the load changes): ASR scales above one replica while the load runs, and back to
its minimum once it stops; no request fails on the way."""

from __future__ import annotations

import threading
import time

import pytest
from audio_files import encode, speech_and_silence
from conftest import ROOT, TEST_MAX_DURATION_S, TEST_MAX_UPLOAD_MB, serving
from ray import serve
from ray.serve.schema import ReplicaState
from traffic import Traffic

from pipeline.settings import serve_config_args


def demo_args() -> dict:
    args = serve_config_args(ROOT / "configs" / "autoscaling-demo.yaml")
    args["audio"].update(max_duration_s=TEST_MAX_DURATION_S, max_upload_mb=TEST_MAX_UPLOAD_MB)
    return args


@pytest.fixture(scope="module")
def autoscaling_graph():
    with serving(demo_args()) as url:
        yield url


class ReplicaSampler:
    """Running ASR replicas, from ``serve.status()``, once a second."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            asr = serve.status().applications["speechgraph"].deployments["asr"]
            self.samples.append((time.monotonic(), int(asr.replica_states.get(ReplicaState.RUNNING, 0))))
            self.stop.wait(1.0)

    def latest(self) -> int:
        return self.samples[-1][1] if self.samples else 0


def test_asr_scales_up_under_load_and_back_down_after(autoscaling_graph):
    sampler = ReplicaSampler()
    sampler.thread.start()
    # Three windows per file, six clients: up to 18 windows in flight for a target of 2 a replica.
    audio = encode(speech_and_silence("jfk", 3.0, "jfk", "jfk", 40.0, "jfk"), 16000, "flac")
    try:
        with Traffic(
            autoscaling_graph, ("long.flac", audio), {"punctuate": "false", "summarize": "false"}, clients=6
        ) as load:
            load.wait_for(lambda _: sampler.latest() > 1, 150, "ASR scaled above one replica under load")
            scaled_up = time.monotonic()
        idle = time.monotonic()
        deadline = idle + 120
        while sampler.latest() != 1:
            assert time.monotonic() < deadline, (
                f"ASR still at {sampler.latest()} replicas 120 s after the load"
            )
            time.sleep(1)
        back_down = time.monotonic()
    finally:
        sampler.stop.set()
        sampler.thread.join(10)
    assert not load.hanging()
    assert load.counts()["failed"] == 0 and load.counts()["refused"] == 0, load.counts()
    peak = max(n for _, n in sampler.samples)
    assert 1 < peak <= 3, "scaled up, within max_replicas"
    started = sampler.samples[0][0]
    print(
        f"ASR: 1 -> {peak} replicas, above 1 after {scaled_up - started:.0f} s of load, back to 1 "
        f"{back_down - idle:.0f} s after it stopped; {load.counts()}"
    )
