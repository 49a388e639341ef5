"""Health that tells the truth: an ASR replica that stops answering is found by its health check,
replaced by Serve, and the service keeps answering meanwhile on the other replica.

The replica is frozen with SIGSTOP: its process stays alive but answers nothing, as a replica
stuck in a CUDA call that holds the GIL does (its event loop is stuck too). A model wedged while
the event loop still runs is caught by the model probe (tests/test_health_probe.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import pytest
import requests
from audio_files import encode, jfk
from conftest import graph_args, serving


def two_asr_replicas_quick_health_checks() -> dict:
    args = graph_args(asr_replicas=2)
    args["deployments"]["asr"].update(health_check_period_s=1, health_check_timeout_s=3)
    return args


@pytest.fixture(scope="module")
def graph_two_asr():
    with serving(two_asr_replicas_quick_health_checks()) as url:
        yield url


def asr_replicas() -> dict[str, dict]:
    """Replica id -> named-actor entry of each ASR replica alive now."""
    import ray

    return {
        a["name"].rsplit("#", 1)[1]: a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "#asr#" in a["name"]
    }


def pid_of(actor: dict) -> int:
    import ray

    handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
    pid: ray.ObjectRef[int] = handle.__ray_call__.remote(lambda self: os.getpid())
    return ray.get(pid, timeout=30)


def test_replicas_report_their_warm_up(graph_two_asr):
    stages = requests.get(f"{graph_two_asr}/v1/stages", timeout=30).json()["stages"]
    assert stages["asr"]["warmup_s"] > 0 and stages["postprocess"]["warmup_s"] > 0


def statuses_until_replaced(url: str, gone: str) -> list[int]:
    """Send a clip again and again until ASR replica ``gone`` has been replaced by a new one;
    the status of every answer meanwhile."""
    clip = encode(jfk(), 16000, "flac")
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            r = requests.post(
                f"{url}/v1/transcribe",
                files={"file": ("jfk.flac", clip)},
                data={"language": "en", "summarize": "false", "punctuate": "false"},
                timeout=180,
            )
            statuses.append(r.status_code)

    caller = threading.Thread(target=keep_asking)
    caller.start()
    try:
        deadline = time.monotonic() + 150
        while gone in asr_replicas() or len(asr_replicas()) < 2:
            assert time.monotonic() < deadline, f"replica {gone} was not replaced: {list(asr_replicas())}"
            time.sleep(1)
    finally:
        stop.set()
        caller.join(timeout=200)
    return statuses


def test_a_frozen_asr_replica_is_replaced_while_the_service_keeps_answering(graph_two_asr):
    url = graph_two_asr
    replicas = asr_replicas()
    assert len(replicas) == 2
    frozen, actor = next(iter(replicas.items()))
    frozen_pid = pid_of(actor)
    os.kill(frozen_pid, signal.SIGSTOP)
    try:
        statuses = statuses_until_replaced(url, frozen)
    finally:
        with contextlib.suppress(ProcessLookupError):  # Serve has killed it
            os.kill(frozen_pid, signal.SIGCONT)
    assert statuses and all(s == 200 for s in statuses), statuses
    after = requests.post(
        f"{url}/v1/transcribe",
        files={"file": ("jfk.flac", encode(jfk(), 16000, "flac"))},
        data={"language": "en"},
        timeout=120,
    )
    assert after.status_code == 200


def test_an_asr_replica_whose_model_wedges_is_replaced_by_its_health_check(graph_two_asr):
    """The model stops answering while the replica's event loop runs on: only a health check that
    asks the model can see it (Serve's default check would pass forever). The fault is put in
    from the test through Ray's ``__ray_call__``: inside one ASR replica, Whisper's calls block.
    No request fails meanwhile: a window stuck there is sent again when the replica is killed."""
    import ray

    wedged, actor = next(iter(asr_replicas().items()))
    handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
    deadline = time.monotonic() + 120  # a replica the test before replaced may still be loading
    while not ray.get(
        handle.__ray_call__.remote(lambda r: r._replica_impl._user_callable_initialized), timeout=30
    ):
        assert time.monotonic() < deadline, "the replica never finished starting"
        time.sleep(1)

    def wedge(replica_actor) -> None:  # runs inside the replica's process
        import threading

        deployment = replica_actor._replica_impl._user_callable_wrapper._callable
        never = threading.Event()
        deployment.transcriber.transcribe = lambda *args, **kwargs: never.wait()
        deployment.transcriber.detect_language = lambda *args, **kwargs: never.wait()

    ray.get(handle.__ray_call__.remote(wedge), timeout=30)
    statuses = statuses_until_replaced(graph_two_asr, wedged)
    # The window stuck in the wedged replica is sent again when Serve kills that replica.
    assert statuses and all(s == 200 for s in statuses), statuses
