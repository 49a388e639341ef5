"""`python -m pipeline transcribe`: the in-process runner from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import srt
import webvtt
from conftest import ROOT, SHARED_AUDIO


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "transcribe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_transcribes_to_json_on_stdout_with_the_serve_config():
    out = run_cli(str(SHARED_AUDIO / "jfk.flac"), "--config", "configs/tiny.yaml", "--no-summarize")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["duration_s"] == 11.0 and doc["segments"]
    assert doc["models"] == {"asr": "tiny-random", "llm": "tiny-random"}
    assert doc["summary"]["reason"] == "not requested"
    assert "window" in out.stderr  # the progress bar


def test_writes_srt_and_vtt_next_to_each_other(tmp_path):
    files = [str(SHARED_AUDIO / "jfk.wav"), str(SHARED_AUDIO / "librispeech-1995-1837-0001.wav")]
    for fmt in ("srt", "vtt", "json"):
        out = run_cli(
            *files,
            "--config",
            "configs/tiny.yaml",
            "--no-punctuate",
            "--no-summarize",
            "--format",
            fmt,
            "--output-dir",
            str(tmp_path),
        )
        assert out.returncode == 0, out.stderr
    for name in ("jfk", "librispeech-1995-1837-0001"):
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        cues = list(srt.parse((tmp_path / f"{name}.srt").read_text()))
        assert [(c.start.total_seconds(), c.end.total_seconds()) for c in cues] == [
            (s["start"], s["end"]) for s in doc["segments"]
        ]
        vtt = webvtt.read(str(tmp_path / f"{name}.vtt"))
        assert [c.text for c in vtt] == [s["text"].strip() for s in doc["segments"]]


def test_translates_into_the_language_asked_for(tmp_path):
    out = run_cli(
        str(SHARED_AUDIO / "jfk.flac"),
        "--config",
        "configs/tiny.yaml",
        "--no-punctuate",
        "--no-summarize",
        "--translate-to",
        "German",
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["translation"]["language"] == "de"
    assert [(t["start"], t["end"]) for t in doc["translation"]["segments"]] == [
        (s["start"], s["end"]) for s in doc["segments"]
    ]
    bad = run_cli(str(SHARED_AUDIO / "jfk.flac"), "--config", "configs/tiny.yaml", "--translate-to", "elvish")
    assert bad.returncode == 2 and "--translate-to" in bad.stderr and "elvish" in bad.stderr


def test_bad_file_fails_with_a_message(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio at all\n" * 20)
    out = run_cli(str(bad), "--config", "configs/tiny.yaml")
    assert out.returncode == 1
    assert "not a recognised audio" in out.stderr
