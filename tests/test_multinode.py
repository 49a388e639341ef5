"""The graph on a real Ray cluster of three nodes on this machine (``ray.cluster_utils.Cluster``: a
head and two workers, each with its own raylet and object store). The ingress and preprocessing
run on the head, ASR and the LLM are pinned by Ray node labels to different workers, as the
RayService pins stages to worker groups. Windows cross nodes through the object store and the
results equal one process's. Then a worker is killed under traffic: Serve starts its replicas on
the surviving worker (the deployments' ``fallback_strategy``), and every request is answered or
refused with a clear 503, none hanging. Then a worker is drained the way the pods' preStop hook
drains it (``python -m deployments.drain``): its replicas move before it goes, and every request
is answered."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests
from audio_files import encode, speech_and_silence
from conftest import ROOT, SHARED_AUDIO, graph_args, serving, tiny_settings
from traffic import Outcome, Traffic

POOL = "speechgraph.io/pool"
REQUEST_TIMEOUT_S = 90


def multinode_args() -> dict:
    args = graph_args()
    d = args["deployments"]
    for stage in ("ingress", "preprocess"):
        d[stage]["ray_actor_options"]["label_selector"] = {POOL: "head"}
    for stage, home, other in (("asr", "asr", "llm"), ("postprocess", "llm", "asr")):
        d[stage].pop("autoscaling_config", None)
        d[stage]["num_replicas"] = 1
        d[stage]["ray_actor_options"].pop("num_gpus", None)  # no GPUs on these nodes
        d[stage]["ray_actor_options"]["label_selector"] = {POOL: home}
        d[stage]["ray_actor_options"]["fallback_strategy"] = [{"label_selector": {POOL: other}}]
    return args


@pytest.fixture(scope="module")
def multinode():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "labels": {POOL: "head"}})
    try:
        workers = {
            "asr": cluster.add_node(num_cpus=2, labels={POOL: "asr"}),
            "llm": cluster.add_node(num_cpus=2, labels={POOL: "llm"}),
        }
        cluster.wait_for_nodes()
        with serving(multinode_args(), address=cluster.address) as url:
            yield url, cluster, workers
    finally:
        cluster.shutdown()


def three_windows() -> bytes:
    # speech 0-11 s | 3 s silence | speech 14-36 s | 40 s silence | speech 76-87 s: 3 windows
    return encode(speech_and_silence("jfk", 3.0, "jfk", "jfk", 40.0, "jfk"), 16000, "flac")


def post(url: str, data: bytes, name: str, **fields) -> requests.Response:
    return requests.post(
        f"{url}/v1/transcribe", files={"file": (name, data)}, data=fields, timeout=REQUEST_TIMEOUT_S
    )


def stage_nodes(url: str) -> dict[str, str]:
    stages = requests.get(f"{url}/v1/stages", timeout=60).json()["stages"]
    return {name: info["node_id"] for name, info in stages.items()}


def test_windows_cross_nodes_and_results_equal_one_process(multinode):
    from pipeline.runner import InProcessPipeline

    url, cluster, workers = multinode
    head, asr_node, llm_node = cluster.head_node.node_id, workers["asr"].node_id, workers["llm"].node_id
    assert stage_nodes(url) == {"preprocess": head, "asr": asr_node, "postprocess": llm_node}
    runner = InProcessPipeline(tiny_settings())
    for name, data in [
        ("jfk.flac", (SHARED_AUDIO / "jfk.flac").read_bytes()),
        ("long.flac", three_windows()),
    ]:
        r = post(url, data, name, summarize="false")
        assert r.status_code == 200, r.text
        doc = r.json()
        nodes = doc["timings"]["nodes"]
        # Decoded and cut on the head, transcribed on one worker, punctuated on the other: each
        # window went from the head's object store to the ASR worker's.
        assert nodes["ingress"] == head and nodes["preprocess"] == head
        assert (
            nodes["asr_windows"] == {asr_node: doc["timings"]["windows"]} and doc["timings"]["windows"] >= 1
        )
        assert nodes["postprocess"] == llm_node
        local = runner.transcribe(data, summarize=False)
        assert doc["language"] == local.language
        assert [(s["start"], s["end"], s["text"], s["tokens"]) for s in doc["segments"]] == [
            (s.start, s.end, s.text, s.tokens) for s in local.segments
        ]
        assert doc["punctuation"] == local.punctuation.model_dump()
    assert name == "long.flac" and doc["timings"]["windows"] == 3


def traffic(url: str) -> Traffic:
    return Traffic(url, ("long.flac", three_windows()), {"summarize": "false"}, timeout_s=REQUEST_TIMEOUT_S)


def answered_on(outcome: Outcome, node: str, after: float) -> bool:
    return (
        outcome.started > after
        and outcome.status == 200
        and node in outcome.body["timings"]["nodes"]["asr_windows"]
    )


def test_a_killed_worker_s_replicas_move_to_the_surviving_worker(multinode):
    url, cluster, workers = multinode
    survivor = workers["llm"].node_id
    with traffic(url) as load:
        load.wait_for(lambda out: sum(o.status == 200 for o in out) >= 3, 120, "3 answers before the kill")
        killed_at = time.monotonic()
        cluster.remove_node(workers["asr"], allow_graceful=False)  # the node's processes are killed
        load.wait_for(
            lambda out: any(answered_on(o, survivor, killed_at) for o in out),
            180,
            "a request sent after the kill answered by ASR on the surviving worker",
        )
    assert not load.hanging(), "a request is still hanging"
    assert stage_nodes(url)["asr"] == survivor
    outcomes = load.outcomes
    in_flight = [o for o in outcomes if o.started < killed_at < o.started + o.seconds]
    assert in_flight, "the kill happened while requests ran"
    for o in outcomes:
        assert o.status in (200, 503), (o.status, o.body)
        assert o.seconds < REQUEST_TIMEOUT_S
        if o.status == 503:  # refused clearly, and told when to retry
            assert o.body["error"]["code"] in ("stage_unavailable", "overloaded") and o.retry_after, o.body
    print(
        f"killed a worker under traffic: {len(outcomes)} requests, {len(in_flight)} in flight at the kill, "
        f"{sum(o.status == 200 for o in outcomes)} answered, "
        f"{sum(o.status == 503 for o in outcomes)} refused (503)"
    )


def test_a_drained_worker_hands_its_replicas_over_with_no_failed_request(multinode):
    url, cluster, workers = multinode
    # A fresh worker to take over; the one holding ASR and the LLM now is drained as a pod's
    # preStop hook drains it before Kubernetes stops the pod.
    fresh = cluster.add_node(num_cpus=2, labels={POOL: "asr"})
    cluster.wait_for_nodes()
    draining = workers["llm"].node_id
    assert set(stage_nodes(url).values()) == {cluster.head_node.node_id, draining}
    with traffic(url) as load:
        load.wait_for(lambda out: sum(o.status == 200 for o in out) >= 2, 120, "2 answers before the drain")
        drained_at = time.monotonic()
        drain = subprocess.run(
            [
                sys.executable,
                "-m",
                "deployments.drain",
                "--node-id",
                draining,
                "--address",
                cluster.address,
                "--deadline-s",
                "120",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert drain.returncode == 0, drain.stderr
        assert "0 Serve replicas left on it" in drain.stderr
        load.wait_for(
            lambda out: any(answered_on(o, fresh.node_id, drained_at) for o in out),
            120,
            "a request answered by ASR on the fresh worker",
        )
    assert not load.hanging()
    assert stage_nodes(url)["asr"] == fresh.node_id and stage_nodes(url)["postprocess"] == fresh.node_id
    assert [(o.status, o.body) for o in load.outcomes if o.status != 200] == []
