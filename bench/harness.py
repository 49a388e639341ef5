"""What the benchmarks share: test audio, a graph served from a config on a local Ray cluster,
and BENCHMARKS.md, where each benchmark rewrites only its own section."""

from __future__ import annotations

import io
import os
import platform
import sys
import time
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import requests

if TYPE_CHECKING:
    from deployments.app_args import AppArgs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLIP = ROOT.parent / "shared" / "fixtures" / "audio" / "jfk.wav"
URL = "http://127.0.0.1:8000"
GAPS = [2.0, 5.0, 0.6, 12.0, 3.0]


def speech(seconds: float) -> np.ndarray:
    from pipeline.audio import decode_audio

    clip = decode_audio(CLIP, max_duration_s=60)
    parts, t, i = [], 0.0, 0
    while t < seconds:
        gap = np.zeros(int(GAPS[i % len(GAPS)] * 16000), np.float32)
        parts += [clip, gap]
        t += (clip.size + gap.size) / 16000
        i += 1
    return np.concatenate(parts)


def wav_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def app_args(config: Path, *, asr_replicas: int, max_batch_size: int) -> dict:
    """``config``'s app args with the default upload limits (4 h, 1 GiB), a fixed number of ASR
    replicas and their batch size; a dict, so that a benchmark can change more before ``build_app``
    validates it."""
    from pipeline.settings import serve_config_args

    args = serve_config_args(config)
    args["audio"].update(max_duration_s=4 * 3600, max_upload_mb=1024)
    asr = args["deployments"]["asr"]
    asr.pop("autoscaling_config", None)
    asr["num_replicas"] = asr_replicas
    asr["user_config"] = {**asr.get("user_config", {}), "max_batch_size": max_batch_size}
    return args


#: The benchmark models: a random-weight Whisper of whisper-tiny's dimensions (d_model 384, 4+4
#: layers) decoding a fixed number of tokens per window, so that compute is real. Random weights
#: never predict end-of-text, so every window decodes exactly ``max_new_tokens``
#: (tests/test_whisper.py checks it).
BENCH_WHISPER = "tiny-random-whisper-tiny-shape"
BENCH_DECODE_TOKENS = 40


def bench_args(*, asr_replicas: int = 1, max_batch_size: int = 8) -> dict:
    """configs/tiny.yaml with the benchmark Whisper and its fixed decode length."""
    args = app_args(ROOT / "configs" / "tiny.yaml", asr_replicas=asr_replicas, max_batch_size=max_batch_size)
    args["asr"].update(model=BENCH_WHISPER, max_new_tokens=BENCH_DECODE_TOKENS)
    return args


def models_line() -> str:
    return (
        f"Models: Whisper `{BENCH_WHISPER}` (random weights, d_model 384, 4 encoder + 4 decoder "
        f"layers) decoding exactly {BENCH_DECODE_TOKENS} tokens per window; LLM `tiny-random`."
    )


def serve_and_measure(args: dict | AppArgs, work, warmup) -> list[float]:
    import ray
    from ray import serve

    from deployments.app import build_app
    from deployments.app_args import AppArgs

    validated = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)  # before Ray starts
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": 8000})
        serve.run(build_app(validated), name="speechgraph", route_prefix="/")
        deadline = time.monotonic() + 300
        while requests.get(f"{URL}/readyz", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("the graph did not become healthy")
            time.sleep(0.5)
        warmup()  # models loaded and first calls done before anything is timed
        return work()
    finally:
        serve.shutdown()
        ray.shutdown()


def post(data: bytes) -> dict:
    r = requests.post(
        f"{URL}/v1/transcribe",
        files={"file": ("audio.wav", data)},
        data={"language": "en", "punctuate": "false", "summarize": "false"},
        timeout=7200,
    )
    r.raise_for_status()
    return r.json()


def machine() -> str:
    import torch

    gpu = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    return (
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {gpu}."
    )


def config_line(config: Path) -> str:
    name = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    return (
        f"Config: `{name}` (tiny random-weight models on this machine: compute and batching are "
        "real, the text is not)."
    )


def write_section(out: Path, name: str, text: str) -> None:
    """Replace benchmark ``name``'s section of ``out`` (between its markers) with ``text``."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    current = out.read_text() if out.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in current and end in current:
        current = current[: current.index(begin)] + block + current[current.index(end) + len(end) :]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    out.write_text(current)
