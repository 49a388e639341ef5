"""Translation and Whisper's LoRA adapters: what each costs. Each part prints a table and writes its
own section of BENCHMARKS.md.

    .venv/bin/python bench/translate.py adapters [--windows 16] [--runs 3]

``adapters``: ASR throughput (windows/s) of an in-process ``WhisperTranscriber`` (the benchmark
Whisper of ``bench.harness``, on CPU, no Ray) serving two generated LoRA adapters
(``asr.adapters``), on windows of real speech (the clips of ``../shared/fixtures/audio``, read
from its manifest): every window on one adapter; mixed traffic alternating the two adapters, each
batch of 8 split into ``generate`` calls by the ASR deployment's own grouping
(``deployments.asr.generate_calls``); the base model with the adapters loaded but none chosen;
the base model with no adapters configured; and one adapter merged at start. Within each run the
scenarios are measured in turn, so drift of the machine hits them alike; the table gives each
scenario's median over the runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BENCH_DECODE_TOKENS, BENCH_WHISPER, CLIP, ROOT, machine, write_section

#: The windows of one ``@serve.batch`` call of the ASR deployment (its default ``max_batch_size``).
BATCH = 8

#: The adapters served: the generated ones, drawn from different seeds.
ADAPTERS = {"a": "tiny-random-lora-a", "b": "tiny-random-lora-b"}


@dataclass(frozen=True)
class AdapterTraffic:
    """One scenario: which transcriber serves it, and which adapter window ``i`` asks for."""

    label: str
    transcriber: str
    adapter_of: Callable[[int], str | None]


SCENARIOS = [
    AdapterTraffic("one adapter: every window `a`", "adapters", lambda i: "a"),
    AdapterTraffic("mixed: windows alternate `a`, `b`", "adapters", lambda i: "ab"[i % 2]),
    AdapterTraffic("base model, adapters loaded, none chosen", "adapters", lambda i: None),
    AdapterTraffic("base model, no adapters configured", "base", lambda i: None),
    AdapterTraffic("`a` merged at start", "merged", lambda i: None),
]


def speech_windows(count: int):
    """``count`` windows of real speech: the manifest's clips (each under 30 s, so one window
    each), in turn."""
    from pipeline.audio import decode_audio
    from pipeline.whisper import WindowAudio

    folder = CLIP.parent
    clips = json.loads((folder / "manifest.json").read_text())["clips"]
    audio = [decode_audio(folder / clip["file"], max_duration_s=60) for clip in clips]
    return [WindowAudio(audio[i % len(audio)], 0.0, i) for i in range(count)]


def _transcribers() -> dict:
    from pipeline.settings import AsrSettings
    from pipeline.whisper import WhisperTranscriber

    def settings(**adapters) -> AsrSettings:
        return AsrSettings(model=BENCH_WHISPER, max_new_tokens=BENCH_DECODE_TOKENS, device="cpu", **adapters)

    return {
        "adapters": WhisperTranscriber(settings(adapters=ADAPTERS)),
        "base": WhisperTranscriber(settings()),
        "merged": WhisperTranscriber(settings(adapters={"a": ADAPTERS["a"]}, merge_adapter="a")),
    }


def _serve(transcriber, windows, traffic: AdapterTraffic) -> int:
    """Transcribe ``windows`` as the ASR deployment would, a batch of ``BATCH`` at a time, each
    batch split into generate calls by options (adapter included); returns the calls made."""
    from deployments.asr import WindowRequest, generate_calls
    from pipeline.decoding import DecodeOptions
    from pipeline.whisper import WindowAudio
    from pipeline.windows import Window

    calls = 0
    for first in range(0, len(windows), BATCH):
        requests = [
            WindowRequest(
                w.audio,
                Window(index=w.index, start=0, end=w.audio.size, sample_rate=16000),
                "en",
                DecodeOptions(adapter=traffic.adapter_of(w.index)),
            )
            for w in windows[first : first + BATCH]
        ]
        for call in generate_calls(requests):
            options = call[0][1].options
            audio = [WindowAudio(r.audio, r.window.start_s, r.window.index) for _, r in call]
            transcriber.transcribe(audio, language="en", options=options)
            calls += 1
    return calls


def adapter_switch_rows(window_count: int = 16, runs: int = 3) -> list[dict]:
    """Each scenario's throughput: ``window_count`` windows per run, ``runs`` runs, scenarios in
    turn within a run. A row: label, generate calls per batch, median, lowest and highest
    windows/s."""
    transcribers = _transcribers()
    windows = speech_windows(window_count)
    for traffic in SCENARIOS:  # warm-up: first calls allocate and pick kernels
        _serve(transcribers[traffic.transcriber], windows[:BATCH], traffic)
    rates: dict[str, list[float]] = {t.label: [] for t in SCENARIOS}
    calls: dict[str, int] = {}
    for run in range(runs):
        for traffic in SCENARIOS:
            started = time.perf_counter()
            calls[traffic.label] = _serve(transcribers[traffic.transcriber], windows, traffic)
            rates[traffic.label].append(window_count / (time.perf_counter() - started))
            print(f"run {run + 1}/{runs}: {traffic.label}: {rates[traffic.label][-1]:.2f} windows/s")
    batches = -(-window_count // BATCH)
    return [
        {
            "label": t.label,
            "calls_per_batch": calls[t.label] / batches,
            "median": statistics.median(rates[t.label]),
            "low": min(rates[t.label]),
            "high": max(rates[t.label]),
        }
        for t in SCENARIOS
    ]


def adapters_section(rows: list[dict], window_count: int, runs: int) -> str:
    import torch

    base = next(r for r in rows if r["label"] == "base model, no adapters configured")["median"]
    by_label = {r["label"]: r for r in rows}
    single = by_label["one adapter: every window `a`"]["median"]
    mixed = by_label["mixed: windows alternate `a`, `b`"]["median"]
    table = [
        "| traffic | generate calls per batch of 8 | windows/s (median) | runs (min-max) | vs. no adapters |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    table += [
        f"| {r['label']} | {r['calls_per_batch']:g} | {r['median']:.2f} | {r['low']:.2f}-{r['high']:.2f} | "
        f"{r['median'] / base:.2f}x |"
        for r in rows
    ]
    return "\n".join(
        [
            "## Whisper LoRA adapters (`bench/translate.py adapters`)",
            "",
            f"Measured {datetime.date.today().isoformat()}. {machine()}",
            f"Model: Whisper `{BENCH_WHISPER}` (random weights, d_model 384, 4 encoder + 4 decoder "
            f"layers) decoding exactly {BENCH_DECODE_TOKENS} tokens per window, on CPU with "
            f"{torch.get_num_threads()} torch threads, in process (`WhisperTranscriber`, no Ray). "
            "Adapters: the generated `tiny-random-lora-a` and `-b` (LoRA rank 8 on the query and value "
            "projections of every attention layer, encoder and decoder), loaded with peft.",
            f"Load: {window_count} windows of real speech (the clips of `shared/fixtures/audio`), in "
            f"batches of {BATCH}, each split into generate calls by adapter as the ASR deployment "
            f"splits it; medians of {runs} runs, the scenarios in turn within each run.",
            f"Command: `.venv/bin/python bench/translate.py adapters --windows {window_count} --runs {runs}`",
            "",
            *table,
            "",
            f"- Mixed traffic (two adapters alternating) vs. one adapter: {mixed / single:.2f}x "
            "(each batch of 8 is decoded as two generate calls of 4: windows of different adapters "
            "never share one).",
            f"- One adapter chosen per request vs. no adapters: {single / base:.2f}x (the LoRA "
            "product beside each adapted layer, and the switch before each call).",
            "- CPU only: here a generate call of 4 windows costs about as much per window as one of 8, "
            "so splitting a batch by adapter costs little; where batching pays (a GPU) the split costs "
            "more, not measured here.",
        ]
    )


def adapters_main(opts: argparse.Namespace) -> int:
    rows = adapter_switch_rows(opts.windows, opts.runs)
    text = adapters_section(rows, opts.windows, opts.runs)
    print(text)
    write_section(opts.out, "whisper_adapters", text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = parser.add_subparsers(dest="part", required=True)
    adapters = parts.add_parser("adapters", help="ASR throughput with Whisper LoRA adapters")
    adapters.add_argument("--windows", type=int, default=16, help="windows per run (default: %(default)s)")
    adapters.add_argument("--runs", type=int, default=3, help="runs per scenario (default: %(default)s)")
    adapters.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    adapters.set_defaults(run=adapters_main)
    opts = parser.parse_args(argv)
    return opts.run(opts)


if __name__ == "__main__":
    sys.exit(main())
