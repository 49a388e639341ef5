"""The README's main command: `serve run configs/tiny.yaml`, offline, answering POST /v1/transcribe
on 127.0.0.1:8000 for the shared clip (scripts/demo.sh, with the install step skipped because the
test command has just installed)."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import ROOT


def test_demo_serves_the_tiny_graph_and_prints_the_transcript():
    env = dict(os.environ, SPEECHGRAPH_SKIP_INSTALL="1", HF_HUB_OFFLINE="1")
    out = subprocess.run(
        ["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["duration_s"] == 11.0
    assert doc["segments"] and doc["timings"]["asr_s"] > 0
    assert doc["models"] == {"asr": "tiny-random", "llm": "tiny-random"}
