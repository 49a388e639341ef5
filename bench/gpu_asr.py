"""ASR speed on a GPU: RTFx (audio seconds per wall second) of a Whisper of large-v3's shape
(random weights, float16, SDPA attention) decoding a fixed number of tokens per 30 s window
(random weights never predict end-of-text), in-process and through the graph, for batch sizes
1 to 32; then one GPU shared as 1 x 1.0, 2 x 0.5 and 4 x 0.25 ASR replicas. On CUDA it writes its
section of BENCHMARKS.md beside the public anchors; elsewhere it only prints (a quick check that
the script runs).

    .venv/bin/python bench/gpu_asr.py                       # on a CUDA machine
    .venv/bin/python bench/gpu_asr.py --shape tiny --windows 4 --batch-sizes 1,2 --decode-tokens 8

The audio is speech with pauses, cut into equal 30 s windows (VAD off), so every window is a full
Whisper input and the count is exact.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, URL, app_args, machine, serve_and_measure, speech, wav_bytes, write_section

ANCHORS = (
    "Anchors (published, other hardware): Open ASR Leaderboard whisper-large-v3 RTFx ~180 and "
    "large-v3-turbo ~278 on one A100; TensorRT-LLM large-v3 ~245 on one A100. Target: >= 500 "
    "through the graph on one H100."
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="whisper-large-v3-shape", help="tiny-random Whisper shape")
    parser.add_argument("--decode-tokens", type=int, default=100, help="tokens per 30 s window")
    parser.add_argument("--windows", type=int, default=64, help="30 s windows per measurement")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--sharing-batch", type=int, default=16, help="max_batch_size when sharing the GPU")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    import torch

    from pipeline.settings import AsrSettings
    from pipeline.whisper import WhisperTranscriber, WindowAudio

    cuda = torch.cuda.is_available()
    dtype = "float16" if cuda else "float32"
    model = f"tiny-random-{opts.shape}"
    batches = [int(b) for b in opts.batch_sizes.split(",")]
    audio = speech(opts.windows * 30)[: opts.windows * 30 * 16000]
    audio_s = audio.size / 16000
    rows: list[tuple[str, str, float]] = []

    transcriber = WhisperTranscriber(
        AsrSettings(model=model, device="auto", dtype=dtype, max_new_tokens=opts.decode_tokens)
    )
    windows = [WindowAudio(audio[i * 480000 : (i + 1) * 480000], i * 30.0, i) for i in range(opts.windows)]
    transcriber.transcribe(windows[:2], language="en")  # warm-up: kernels, allocator
    for batch in batches:
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for i in range(0, len(windows), batch):
            transcriber.transcribe(windows[i : i + batch], language="en")
        if cuda:
            torch.cuda.synchronize()
        rows.append(("in-process", f"batch {batch}", audio_s / (time.perf_counter() - started)))
        print(rows[-1])
    del transcriber
    if cuda:
        torch.cuda.empty_cache()

    data = wav_bytes(audio)

    def graph_rtfx(replicas: int, batch: int) -> float:
        args = app_args(ROOT / "configs" / "tiny.yaml", asr_replicas=replicas, max_batch_size=batch)
        args["audio"]["vad"] = False
        args["asr"].update(model=model, device="auto", dtype=dtype, max_new_tokens=opts.decode_tokens)
        args["llm"]["device"] = "cpu"
        asr = args["deployments"]["asr"]
        asr["ray_actor_options"]["num_gpus"] = round(1.0 / replicas, 4) if cuda else 0
        asr["max_ongoing_requests"] = max(64, 2 * batch)
        measured: list[float] = []

        def send() -> float:
            started = time.perf_counter()
            r = requests.post(
                f"{URL}/v1/transcribe",
                files={"file": ("speech.wav", data)},
                data={"language": "en", "punctuate": "false", "summarize": "false"},
                timeout=3600,
            )
            r.raise_for_status()
            return time.perf_counter() - started

        def work() -> list[float]:
            measured.append(audio_s / send())
            return measured

        return serve_and_measure(args, work, send)[0]

    for batch in batches:
        rows.append(("graph, 1 x 1.0 GPU", f"batch {batch}", graph_rtfx(1, batch)))
        print(rows[-1])
    for replicas in (2, 4):
        share = f"{1 / replicas:g}"
        rows.append(
            (
                f"graph, {replicas} x {share} GPU",
                f"batch {opts.sharing_batch}",
                graph_rtfx(replicas, opts.sharing_batch),
            )
        )
        print(rows[-1])

    table = "\n".join(
        [
            "| Path | Batching | RTFx |",
            "| --- | --- | ---: |",
            *[f"| {path} | {batch} | {rtfx:.1f} |" for path, batch, rtfx in rows],
        ]
    )
    command = (
        f".venv/bin/python bench/gpu_asr.py --shape {opts.shape} --decode-tokens {opts.decode_tokens} "
        f"--windows {opts.windows} --batch-sizes {opts.batch_sizes}"
    )
    text = f"""## ASR on a GPU ({datetime.date.today().isoformat()})

{machine()}
Command: `{command}`.
Whisper `{model}` (random weights, {dtype}, SDPA), {opts.decode_tokens} tokens per 30 s window,
{opts.windows} windows ({audio_s / 60:.0f} min of audio) per measurement. RTFx: audio seconds per wall second.

{table}

{ANCHORS}
"""
    print(text)
    if cuda:
        write_section(opts.out, "gpu_asr", text)
    else:
        print("(no CUDA device: BENCHMARKS.md left as it is)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
