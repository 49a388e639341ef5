"""Observability end to end. Metrics: Ray's metrics endpoint scraped by a real Prometheus server (Debian's
``prometheus`` package, installed by scripts/system-deps.sh), queried over its HTTP API after real
requests; the raw exposition read with ``prometheus_client``'s parser; the alert rules checked by
``promtool`` and every metric the rules and the dashboard use found in the real scrape. Logs:
one JSON line per request at the ingress, and the request id in every stage's lines."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from audio_files import encode
from conftest import ROOT, SHARED_AUDIO, graph_args, needs_tool, serving
from prometheus_client.parser import text_string_to_metric_families

pytestmark = needs_tool("prometheus", package="prometheus")

K8S = ROOT / "k8s" / "base"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def graph_with_metrics(metrics_port):
    with serving(graph_args(diarization=True), metrics_export_port=metrics_port) as url:
        yield url


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, metrics_port, graph_with_metrics):
    """A Prometheus server on loopback scraping Ray's metrics endpoint every second."""
    workdir = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "ray", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("w")
    server = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (
                workdir / "prometheus.log"
            ).read_text()
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def query(prometheus: str, promql: str) -> list[dict]:
    r = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def wait_for(prometheus: str, promql: str, check, timeout_s: float = 90):
    """Poll ``promql`` until ``check(result)`` holds (Ray's agent exports every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = query(prometheus, promql)
        if result and check(result):
            return result
        assert time.monotonic() < deadline, f"{promql} never held: {result}"
        time.sleep(1)


def scalar(result: list[dict]) -> float:
    return sum(float(r["value"][1]) for r in result)


@pytest.fixture(scope="module")
def traffic(graph_with_metrics) -> dict:
    """A few real requests, one after another: three clips of known duration (one summarized, one
    diarized),
    half a second of silence over the OpenAI route, and one bad upload (415). Returns the
    durations sent and the documents' speech windows."""
    url = graph_with_metrics
    sent, windows = [], 0
    for name, summarize, diarize in [
        ("jfk.flac", "true", "false"),
        ("librispeech-1995-1837-0001.wav", "false", "false"),
        ("jfk.wav", "false", "true"),
    ]:
        r = requests.post(
            f"{url}/v1/transcribe",
            files={"file": (name, (SHARED_AUDIO / name).read_bytes())},
            data={"summarize": summarize, "punctuate": "true", "diarize": diarize},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        sent.append(r.json()["duration_s"])
        windows += r.json()["timings"]["windows"]
    silence = np.zeros(8000, np.float32)  # no speech: no window, no Whisper call
    r = requests.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": ("x.wav", encode(silence, 16000, "wav"))},
        data={"model": "whisper-1", "response_format": "verbose_json"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    sent.append(r.json()["duration"])
    bad = requests.post(
        f"{url}/v1/transcribe", files={"file": ("notes.txt", b"not audio at all" * 10)}, timeout=60
    )
    assert bad.status_code == 415
    return {"durations": sent, "windows": windows, "live": asyncio.run(live_session(url))}


async def live_session(url: str) -> dict:
    """One live session (``/v1/realtime``, server VAD): 4 s of speech and 1.5 s of silence at real
    time, until every turn is transcribed. Returns the seconds streamed and the turns and partial
    results the client saw."""
    import websockets

    # The clip's 16 kHz PCM16 samples sent as 24 kHz PCM16: (faster) speech, for the counts.
    pcm = (SHARED_AUDIO / "jfk.wav").read_bytes()[44 : 44 + 4 * 48000] + bytes(int(1.5 * 48000))
    seen: list[str] = []
    async with websockets.connect(
        url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    ) as ws:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k, i in enumerate(range(0, len(pcm), 4800)):
            await ws.send(
                json.dumps(
                    {
                        "type": "input_audio_buffer.append",
                        "audio": base64.b64encode(pcm[i : i + 4800]).decode(),
                    }
                )
            )
            await asyncio.sleep(max(0.0, start + (k + 1) * 0.1 - loop.time()))
        with contextlib.suppress(TimeoutError):
            while True:  # until nothing more comes
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 3))["type"])
    turns = seen.count("conversation.item.input_audio_transcription.completed")
    assert turns == seen.count("input_audio_buffer.committed") > 0, seen
    return {"seconds": len(pcm) / 48000, "turns": turns}


def test_audio_seconds_in_prometheus_equal_the_durations_sent(prometheus, traffic):
    total = sum(traffic["durations"])
    wait_for(
        prometheus,
        'sum(ray_speechgraph_audio_seconds_total{stage="preprocess"})',
        lambda r: abs(scalar(r) - total) < 0.01,
    )
    asr = scalar(
        wait_for(prometheus, 'sum(ray_speechgraph_audio_seconds_total{stage="asr"})', lambda r: scalar(r) > 0)
    )
    live_s = traffic["live"]["seconds"]
    assert asr <= total + live_s + 0.01, "ASR clears only the speech, never more than the audio"


def test_live_sessions_in_prometheus(prometheus, traffic):
    live = traffic["live"]
    completed = 'sum(ray_speechgraph_realtime_turns_total{outcome="completed"})'
    wait_for(prometheus, completed, lambda r: scalar(r) == live["turns"])
    audio = "sum(ray_speechgraph_realtime_audio_seconds_total)"
    wait_for(prometheus, audio, lambda r: abs(scalar(r) - live["seconds"]) < 0.01)
    final = "sum(ray_speechgraph_realtime_final_seconds_count)"
    wait_for(prometheus, final, lambda r: scalar(r) == live["turns"])
    wait_for(prometheus, "sum(ray_speechgraph_realtime_partial_seconds_count)", lambda r: scalar(r) > 0)
    wait_for(
        prometheus, 'sum(ray_speechgraph_realtime_closed_total{reason="client"})', lambda r: scalar(r) == 1
    )
    wait_for(prometheus, "sum(ray_speechgraph_realtime_sessions)", lambda r: scalar(r) == 0)


def test_requests_counted_by_route_and_status(prometheus, traffic):
    ok = wait_for(
        prometheus,
        "sum by (route, status) (ray_speechgraph_requests_total)",
        lambda r: any(x["metric"]["status"] == "415" for x in r),
    )
    counts = {(x["metric"]["route"], x["metric"]["status"]): float(x["value"][1]) for x in ok}
    assert counts[("/v1/transcribe", "200")] == 3
    assert counts[("/v1/transcribe", "415")] == 1
    assert counts[("/v1/audio/transcriptions", "200")] == 1


def test_histograms_have_plausible_values(prometheus, traffic):
    n = len(traffic["durations"])
    wait_for(prometheus, 'sum(ray_speechgraph_stage_seconds_count{stage="total"})', lambda r: scalar(r) == n)
    p50 = scalar(
        query(
            prometheus,
            'histogram_quantile(0.5, sum by (le) (ray_speechgraph_stage_seconds_bucket{stage="total"}))',
        )
    )
    assert 0 < p50 < 120
    rtf = scalar(
        wait_for(prometheus, "sum(ray_speechgraph_real_time_factor_count)", lambda r: scalar(r) == n)
    )
    assert rtf == n
    # One request at a time: each Whisper batch held one window. (Counts, not sums: Ray exports a
    # histogram's _sum from bucket midpoints, not the observed values.) The live session's passes
    # are batches of one too, on top.
    batches = wait_for(prometheus, "sum(ray_speechgraph_asr_batch_size_count)", lambda r: scalar(r) > 0)
    ones = 'sum(ray_speechgraph_asr_batch_size_bucket{le="1.0"})'
    wait_for(prometheus, ones, lambda r: scalar(r) == scalar(batches) >= traffic["windows"] + 1)
    wait_for(prometheus, "sum(ray_speechgraph_windows_per_request_count)", lambda r: scalar(r) == n)
    tokens = wait_for(
        prometheus, "sum by (direction) (ray_speechgraph_llm_tokens_total)", lambda r: len(r) == 2
    )
    assert all(float(x["value"][1]) > 0 for x in tokens)
    loads = wait_for(prometheus, "ray_speechgraph_model_load_seconds", lambda r: len(r) >= 3)
    assert {x["metric"]["stage"] for x in loads} >= {"asr", "postprocess", "diarization"}
    # The one diarized file: one speaker (Kennedy), its seconds embedded, its diarization timed.
    wait_for(prometheus, "sum(ray_speechgraph_speakers_per_file_count)", lambda r: scalar(r) == 1)
    wait_for(prometheus, 'sum(ray_speechgraph_speakers_per_file_bucket{le="1.0"})', lambda r: scalar(r) == 1)
    diarized = 'sum(ray_speechgraph_stage_seconds_count{stage="diarization"})'
    wait_for(prometheus, diarized, lambda r: scalar(r) == 1)
    embedded = 'sum(ray_speechgraph_audio_seconds_total{stage="diarization"})'
    wait_for(prometheus, embedded, lambda r: 0 < scalar(r) <= traffic["durations"][2] + 0.01)
    received = scalar(
        wait_for(prometheus, "sum(ray_speechgraph_received_bytes_total)", lambda r: scalar(r) > 0)
    )
    assert received > 100_000


def test_ray_serve_own_series_are_scraped_beside_ours(prometheus, traffic):
    for name in [
        "ray_serve_deployment_processing_latency_ms_bucket",
        "ray_serve_num_http_requests_total",
        "ray_serve_deployment_replica_healthy",
    ]:
        wait_for(prometheus, f'count({name}{{application="speechgraph"}})', lambda r: scalar(r) > 0)


def test_labels_stay_bounded(prometheus, traffic):
    names = requests.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"]
    ours = [n for n in names if n.startswith("ray_speechgraph_")]
    assert ours
    allowed = {
        "__name__",
        "instance",
        "job",
        "application",
        "deployment",
        "replica",
        "route",
        "status",
        "stage",
        "task",
        "reason",
        "outcome",
        "direction",
        "le",
        "Component",
        "SessionName",
        "Version",
        "NodeAddress",
        "WorkerId",
        "JobId",
        "otel_scope_name",
    }
    for name in ours:
        for series in query(prometheus, name):
            assert set(series["metric"]) <= allowed, series["metric"]


def test_raw_exposition_parses_with_prometheus_client(metrics_port, traffic):
    deadline = time.monotonic() + 60
    while True:
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        if "ray_speechgraph_stage_seconds" in families:
            break
        assert time.monotonic() < deadline, "our metrics never reached the endpoint"
        time.sleep(1)
    stage = families["ray_speechgraph_stage_seconds"]
    assert stage.type == "histogram"
    bounds = sorted({float(s.labels["le"]) for s in stage.samples if s.name.endswith("_bucket")})
    assert bounds[:3] == [0.01, 0.025, 0.05] and bounds[-1] == float("inf")
    assert families["ray_speechgraph_requests"].type == "counter"


def rule_groups() -> dict:
    return {"groups": yaml.safe_load((K8S / "prometheus-rules.yaml").read_text())["spec"]["groups"]}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((K8S / "dashboards" / "speechgraph.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def as_query(expr: str) -> str:
    """A dashboard expression with Grafana's variables filled in."""
    return expr.replace("$application", "speechgraph").replace("$__rate_interval", "1m")


@needs_tool("promtool", package="prometheus")
def test_alert_rules_pass_promtool(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout


def test_rules_and_dashboard_use_only_scraped_metrics_and_evaluate(prometheus, traffic):
    exprs = [r["expr"] for g in rule_groups()["groups"] for r in g["rules"]] + dashboard_exprs()
    used = {name for e in exprs for name in re.findall(r"\bray_[a-z0-9_]+", e)}
    deadline = time.monotonic() + 90
    while True:
        scraped = set(requests.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
        if used <= scraped or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert used <= scraped, f"used but never scraped: {sorted(used - scraped)}"
    for expr in exprs:
        r = requests.get(f"{prometheus}/api/v1/query", params={"query": as_query(expr)}, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "success", (expr, r.text)


def test_dashboard_ships_as_a_configmap_for_grafanas_sidecar():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generator = kustomization["configMapGenerator"][0]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    for file in generator["files"]:
        assert json.loads((K8S / file).read_text())["panels"]
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file()


def serve_log_lines() -> list[dict]:
    """Every JSON line in this Ray session's Serve logs."""
    import ray

    node = ray._private.worker._global_node
    assert node is not None, "Ray is not initialised in this process: the graph fixture starts it"
    logs = Path(node.get_session_dir_path()) / "logs" / "serve"
    lines = []
    for path in logs.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    lines.append(json.loads(line))
    return lines


def test_one_json_log_line_per_request_and_its_id_reaches_every_stage(graph_with_metrics):
    url = graph_with_metrics
    request_id = f"test-{uuid.uuid4().hex}"
    r = requests.post(
        f"{url}/v1/transcribe",
        headers={"X-Request-Id": request_id},
        files={"file": ("jfk.flac", (SHARED_AUDIO / "jfk.flac").read_bytes())},
        data={"summarize": "true"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == request_id == r.json()["request_id"]
    deadline = time.monotonic() + 30
    while True:
        ours = [line for line in serve_log_lines() if line.get("request_id") == request_id]
        summary = [line for line in ours if "api_route" in line]
        stages = {line.get("deployment") for line in ours}
        if summary and stages >= {
            f"speechgraph_{s}" for s in ("ingress", "preprocess", "asr", "postprocess")
        }:
            break
        assert time.monotonic() < deadline, f"log lines with the request id: {ours}"
        time.sleep(1)
    assert len(summary) == 1, summary
    line = summary[0]
    assert (line["api_route"], line["method"], line["status_code"]) == ("/v1/transcribe", "POST", 200)
    assert line["audio_s"] == pytest.approx(r.json()["duration_s"], abs=0.01)
    assert line["windows"] == r.json()["timings"]["windows"]
    for stage in ("preprocess", "asr", "postprocess"):
        assert line[f"{stage}_s"] == pytest.approx(r.json()["timings"][f"{stage}_s"], abs=0.001)
    assert line["duration_s"] >= r.json()["timings"]["total_s"] - 0.01


def test_unknown_paths_are_logged_as_route_other(graph_with_metrics):
    """A 404 for an unknown path gets its line too, as route ``other`` (never the raw path: the
    metric's labels stay bounded)."""
    url = graph_with_metrics
    request_id = f"test-{uuid.uuid4().hex}"
    r = requests.get(f"{url}/no/such/{uuid.uuid4().hex}", headers={"X-Request-Id": request_id}, timeout=30)
    assert r.status_code == 404
    deadline = time.monotonic() + 30
    while not (
        lines := [x for x in serve_log_lines() if x.get("request_id") == request_id and "api_route" in x]
    ):
        assert time.monotonic() < deadline, "no log line for the 404"
        time.sleep(1)
    assert (lines[0]["api_route"], lines[0]["status_code"]) == ("other", 404)
