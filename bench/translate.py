"""Translation and Whisper's LoRA adapters: what each costs. Each part prints a table and writes its
own section of BENCHMARKS.md.

    .venv/bin/python bench/translate.py translation [--minutes 10] [--runs 3]
    .venv/bin/python bench/translate.py adapters [--windows 16] [--runs 3]

``translation``: the wall time that ``translate_to`` adds to a long file through the graph (one
local Ray cluster serving ``configs/tiny.yaml`` with the benchmark Whisper of ``bench.harness``
and the tiny random LLM), requests with and without it alternating, ``--runs`` of each; and, on
one streamed request, how soon the first translated segment comes after the first segment.

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

from bench.harness import (
    BENCH_DECODE_TOKENS,
    BENCH_WHISPER,
    CLIP,
    ROOT,
    URL,
    bench_args,
    config_line,
    machine,
    models_line,
    serve_and_measure,
    speech,
    wav_bytes,
    write_section,
)

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


def _transcribe(data: bytes, **form: str) -> tuple[float, dict]:
    import requests

    started = time.perf_counter()
    fields = {"language": "en", "punctuate": "false", "summarize": "false", **form}
    r = requests.post(f"{URL}/v1/transcribe", files={"file": ("talk.wav", data)}, data=fields, timeout=7200)
    r.raise_for_status()
    return time.perf_counter() - started, r.json()


def _first_events(data: bytes, language: str) -> dict[str, float]:
    """Seconds from the request to the first ``segment`` and the first ``translation`` event."""
    import requests

    from pipeline.client import sse_events

    started, first = time.perf_counter(), dict[str, float]()
    fields = {"language": "en", "punctuate": "false", "summarize": "false", "stream": "true"}
    with requests.post(
        f"{URL}/v1/transcribe",
        files={"file": ("talk.wav", data)},
        data={**fields, "translate_to": language},
        stream=True,
        timeout=7200,
    ) as r:
        r.raise_for_status()
        for name, _ in sse_events(r):
            first.setdefault(name, time.perf_counter() - started)
    return first


def translation_main(opts: argparse.Namespace) -> int:
    data = wav_bytes(speech(opts.minutes * 60))
    measured: dict = {"plain": [], "translated": [], "added": [], "calls": [], "docs": []}

    def work() -> list[float]:
        for _ in range(opts.runs):
            plain_s, _ = _transcribe(data)
            translated_s, doc = _transcribe(data, translate_to=opts.language)
            measured["plain"].append(plain_s)
            measured["translated"].append(translated_s)
            measured["added"].append(doc["timings"]["translation_s"])
            measured["calls"].append(doc["timings"]["translation_calls"])
            measured["docs"].append(doc)
        measured["first"] = _first_events(data, opts.language)
        return []

    serve_and_measure(
        bench_args(), work, warmup=lambda: _transcribe(wav_bytes(speech(20)), translate_to="de")
    )
    plain, translated = statistics.median(measured["plain"]), statistics.median(measured["translated"])
    doc = measured["docs"][-1]
    segments, untranslated = len(doc["segments"]), doc["translation"]["untranslated"]
    first = measured["first"]
    lines = [
        "## Translation by the LLM stage (`bench/translate.py translation`)",
        "",
        f"Measured {datetime.date.today().isoformat()}. {machine()}",
        config_line(ROOT / "configs" / "tiny.yaml"),
        models_line() + " The random LLM's answers are noise, generated greedily up to each call's budget "
        "(`llm.translation_token_ratio` x the batch's input tokens) unless an end token comes first.",
        f"Command: `.venv/bin/python bench/translate.py translation --minutes {opts.minutes:g} "
        f"--runs {opts.runs}`",
        "",
        f"A {doc['duration_s'] / 60:.0f}-minute file (the shared `jfk.wav` clip between pauses of "
        f"0.6-12 s; {doc['timings']['windows']} windows, {segments} segments) through `/v1/transcribe`, "
        f"with and without `translate_to={opts.language}`, alternating, {opts.runs} runs each "
        "(punctuation and summary off):",
        "",
        "| request | wall s (median) | runs |",
        "| --- | ---: | --- |",
        f"| transcription | {plain:.1f} | {', '.join(f'{x:.1f}' for x in measured['plain'])} |",
        f"| transcription + translation | {translated:.1f} | "
        f"{', '.join(f'{x:.1f}' for x in measured['translated'])} |",
        "",
        f"- Wall time added by translation: {translated - plain:+.1f} s ({translated / plain - 1:+.0%}); "
        f"`timings.translation_s` (after the last window): median "
        f"{statistics.median(measured['added']):.1f} s; translation calls per file: "
        f"{', '.join(str(c) for c in measured['calls'])} (segments final while a call runs go in the next).",
        f"- Segments that kept their source text (the random LLM's answers have no numbered lines): "
        f"{untranslated} of {segments}, each marked with its reason.",
        f"- Streamed (`stream=true`): first `segment` event {first.get('segment', float('nan')):.1f} s "
        f"after the request, first `translation` event {first.get('translation', float('nan')):.1f} s, "
        f"the `document` {first.get('document', float('nan')):.1f} s.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(opts.out, "translation", text)
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
    translation = parts.add_parser("translation", help="wall time added by translate_to, through the graph")
    translation.add_argument("--minutes", type=float, default=10, help="file length (default: %(default)s)")
    translation.add_argument(
        "--runs", type=int, default=3, help="requests of each kind (default: %(default)s)"
    )
    translation.add_argument("--language", default="de", help="translate_to (default: %(default)s)")
    translation.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    translation.set_defaults(run=translation_main)
    opts = parser.parse_args(argv)
    return opts.run(opts)


if __name__ == "__main__":
    sys.exit(main())
