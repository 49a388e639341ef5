"""A client that goes away mid-stream: the windows of its request still queued for ASR are
cancelled, so the stage's replicas stop working for nobody."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from audio_files import encode, jfk
from conftest import graph_args, serving


def one_window_at_a_time() -> dict:
    """One ASR replica taking one window at a time, so a file's windows queue up behind it."""
    args = graph_args()
    args["audio"].update(max_duration_s=3600, max_upload_mb=64)
    asr = args["deployments"]["asr"]
    asr.pop("autoscaling_config", None)
    asr.update(num_replicas=1, max_ongoing_requests=1, user_config={"max_batch_size": 1})
    return args


@pytest.fixture(scope="module")
def graph_one_asr():
    with serving(one_window_at_a_time()) as url:
        yield url


def windows_transcribed(url: str) -> int:
    return requests.get(f"{url}/v1/stages", timeout=30).json()["stages"]["asr"]["windows_transcribed"]


def long_speech() -> bytes:
    clip, gap = jfk(), np.zeros(int(0.6 * 16000), np.float32)
    return encode(np.concatenate([clip, gap] * 80), 16000, "flac")  # ~15 min, ~30 windows


def test_a_client_that_goes_away_cancels_its_remaining_windows(graph_one_asr):
    url = graph_one_asr
    before = windows_transcribed(url)
    with requests.post(f"{url}/v1/transcribe", files={"file": ("long.flac", long_speech())},
                       data={"language": "en", "stream": "true"}, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        total = None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data:") and '"windows_total"' in line:
                total = int(line.split('"windows_total":')[1].split(",")[0].split("}")[0])
                break
    assert total is not None and total >= 20, "the file has many windows"
    # Undisturbed, the other windows take ~0.4 s each here (12 s for 32 measured), so in the
    # 8 s below most of them would run if the request went on without its client.
    time.sleep(3)  # the proxy notices the closed connection and cancels the request
    settled = windows_transcribed(url)
    time.sleep(5)
    after = windows_transcribed(url)
    assert after == settled, "no windows of the abandoned request ran after it was cancelled"
    assert after - before < total / 2, f"{after - before} of {total} windows ran for a client that left"
    r = requests.post(f"{url}/v1/transcribe", files={"file": ("jfk.flac", encode(jfk(), 16000, "flac"))},
                      data={"language": "en"}, timeout=120)
    assert r.status_code == 200 and r.json()["segments"], "the service goes on answering"
