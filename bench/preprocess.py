"""Preprocessing (decode, Silero VAD, windows) of long files, in five parts. Prints a table per part
and writes the "Preprocessing" section of BENCHMARKS.md (only when every part ran).

    .venv/bin/python bench/preprocess.py [--config configs/tiny.yaml] [--minutes 60] [--repeats 3]
        [--before-ref 487b88f] [--parts 1,2,3,4,5]

1. VAD alone on the decoded hour, one thread: the old path (TorchScript model, one Python step per
   32 ms frame) against the new one (sequence ONNX model), same options, same audio.
2. Decode + VAD in one process, per format (``plan_in_chunks`` over the file's bytes: what one
   preprocess replica does for one file front to back).
3. One file through the preprocess stage on Serve, 1 and 2 replicas (``bench/preprocess_stage.py``):
   upload into the object store, the probe (the streamed plan's first answer), then every part of
   ``AudioParts``.
4. The whole graph from the config over HTTP (``bench/preprocess_graph.py``): first streamed
   segment of a file twice as long, the hour (speech, then silence) to its document; with
   ``--before-ref``, the same measured on that git revision (a temporary worktree) in the same run.
5. Peak memory of a preprocess replica for a file four times as long, and for the hour.

The audio is the shared JFK clip again and again with pauses (``bench.harness.GAPS``), exactly
``--minutes`` long ("the hour"), encoded with PyAV into a temporary folder: WAV 16 kHz 16-bit,
FLAC and MP3 at 44.1 kHz, Ogg/Opus at 48 kHz (mono). Times are medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import CLIP, GAPS, ROOT, config_line, machine, write_section
from bench.preprocess_report import Report

RATE = 16000
# format -> (codec, sample rate); the muxer is named like the format
CODECS = {
    "wav": ("pcm_s16le", 16000),
    "flac": ("flac", 44100),
    "mp3": ("libmp3lame", 44100),
    "ogg": ("libopus", 48000),
}
# file name -> (format, length in hours of --minutes, silent); the parts that need each
FILES = {
    "wav-1h": ("wav", 1, False),
    "flac-1h": ("flac", 1, False),
    "mp3-1h": ("mp3", 1, False),
    "ogg-1h": ("ogg", 1, False),
    "flac-4h": ("flac", 4, False),
    "ogg-4h": ("ogg", 4, False),
    "wav-2h": ("wav", 2, False),
    "silence-1h": ("wav", 1, True),
}
NEEDED = {
    1: ["wav-1h"],
    2: ["wav-1h", "flac-1h", "mp3-1h"],
    3: ["wav-1h", "flac-1h", "mp3-1h"],
    4: ["wav-2h", "wav-1h", "silence-1h"],
    5: ["flac-4h", "flac-1h", "ogg-4h", "ogg-1h"],
}


def pieces(seconds: float, silent: bool) -> Iterator[np.ndarray]:
    """``bench.harness.speech(seconds)`` (or silence) cut to exactly ``seconds``, a piece at a
    time, so that hours never sit in memory at once."""
    from pipeline.audio import decode_audio

    clip = decode_audio(CLIP, max_duration_s=60)
    left, i = round(seconds * RATE), 0
    while left > 0:
        gap = np.zeros(int(GAPS[i % len(GAPS)] * RATE), np.float32)
        for piece in (np.zeros_like(clip) if silent else clip, gap):
            if left > 0:
                yield piece[:left]
                left -= min(left, piece.size)
        i += 1


def encode_file(path: Path, fmt: str, audio: Iterator[np.ndarray]) -> None:
    """16 kHz mono ``audio`` encoded into ``path`` (PyAV resamples to the codec's rate)."""
    import av

    codec, rate = CODECS[fmt]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        pts = 0
        for piece in audio:
            for i in range(0, piece.size, RATE):
                block = np.ascontiguousarray(piece[None, i : i + RATE])
                frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = RATE, pts, Fraction(1, RATE)
                pts += block.shape[1]
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def timed(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall seconds of ``repeats`` calls, and the last call's result."""
    walls, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), result


def vad_old_vs_new(wav: Path, settings, repeats: int) -> tuple[list[tuple[str, float, int]], bool]:
    """(path, median seconds, spans found) for VAD alone on the decoded audio, one thread each,
    and whether both found the same spans."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from pipeline.audio import decode_audio
    from pipeline.vad import SpeechDetector

    torch.set_num_threads(1)
    audio = decode_audio(wav, max_duration_s=settings.max_duration_s)
    vad = settings.vad_options()
    new = SpeechDetector(settings)
    old = load_silero_vad()

    def old_spans() -> list:
        with torch.inference_mode():
            found = get_speech_timestamps(
                torch.from_numpy(audio),
                old,
                threshold=vad.threshold,
                sampling_rate=RATE,
                min_silence_duration_ms=round(vad.min_silence_s * 1000),
                speech_pad_ms=round(vad.speech_pad_s * 1000),
            )
        old.reset_states()
        return [(t["start"], t["end"]) for t in found]

    new_s, new_found = timed(lambda: new.speech_spans(audio, vad), repeats)
    old_s, old_found = timed(old_spans, repeats)
    assert isinstance(old_found, list) and isinstance(new_found, list)
    same = old_found == new_found
    print(f"  VAD spans old {len(old_found)}, new {len(new_found)}, identical: {same}", file=sys.stderr)
    rows = [
        ("old: TorchScript, `get_speech_timestamps`", old_s, len(old_found)),
        ("new: sequence ONNX, `get_speech_timestamps_sequence`", new_s, len(new_found)),
    ]
    return rows, same


def decode_and_vad(path: Path, settings, repeats: int) -> tuple[float, float, int]:
    """(median seconds, audio seconds, windows) of ``plan_in_chunks`` over the file's bytes."""
    import torch

    from pipeline.long_audio import plan_in_chunks
    from pipeline.vad import SpeechDetector

    torch.set_num_threads(1)
    data, detector = path.read_bytes(), SpeechDetector(settings)

    def plan() -> tuple[int, int]:
        windows = planned_to = 0
        for planned in plan_in_chunks(data, settings, detector):
            windows, planned_to = windows + len(planned.windows), planned.planned_to
        return planned_to, windows

    wall, result = timed(plan, repeats)
    assert isinstance(result, tuple)
    return wall, result[0] / RATE, result[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "tiny.yaml")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of 'the hour'")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before-ref", help="git revision measured side by side in part 4 (487b88f)")
    parser.add_argument("--parts", default="1,2,3,4,5", help="which parts to run, comma-separated")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    parts = sorted({int(p) for p in opts.parts.split(",")})

    from pipeline.settings import load_pipeline_settings

    hour_s = opts.minutes * 60
    settings = load_pipeline_settings(opts.config).audio
    settings = settings.model_copy(update={"max_duration_s": max(settings.max_duration_s, 4 * hour_s + 60)})
    report = Report(opts, hour_s)
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        paths = {}
        for name in dict.fromkeys(n for p in parts for n in NEEDED[p]):
            fmt, hours, silent = FILES[name]
            paths[name] = Path(tmp) / f"{name}.{fmt}"
            started = time.perf_counter()
            encode_file(paths[name], fmt, pieces(hours * hour_s, silent))
            print(f"encoded {paths[name].name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        if 1 in parts:
            print("part 1: VAD alone, old vs new ...", file=sys.stderr)
            report.vad, report.vad_same = vad_old_vs_new(paths["wav-1h"], settings, opts.repeats)
        if 2 in parts:
            print("part 2: decode + VAD in one process ...", file=sys.stderr)
            for name in NEEDED[2]:
                report.in_process[name] = (*decode_and_vad(paths[name], settings, opts.repeats), sizes[name])
        if 3 in parts or 5 in parts:
            from bench.preprocess_stage import measure_stage

            print("parts 3 and 5: the preprocess stage on Serve ...", file=sys.stderr)
            timed = {n: paths[n] for n in NEEDED[3]} if 3 in parts else {}
            peaks = {n: paths[n] for n in NEEDED[5]} if 5 in parts else {}
            report.stage = measure_stage(settings, opts.config, timed, peaks, opts.repeats)
        if 4 in parts:
            from bench.preprocess_graph import measure_tree, worktree

            graph_files = {n: paths[n] for n in NEEDED[4]}
            print("part 4: the whole graph, this tree ...", file=sys.stderr)
            report.graph["this tree"] = measure_tree(ROOT, opts.config, graph_files, opts.repeats)
            if opts.before_ref:
                with worktree(opts.before_ref) as before:
                    print(f"part 4: the whole graph, {opts.before_ref} ...", file=sys.stderr)
                    config = before / opts.config.resolve().relative_to(ROOT)
                    report.graph[opts.before_ref] = measure_tree(before, config, graph_files, opts.repeats)
        report.sizes = sizes
    text = report.text(parts, machine(), config_line(opts.config))
    print(text)
    if parts == [1, 2, 3, 4, 5]:
        write_section(opts.out, "preprocessing", text)
    else:
        print(f"(not written to {opts.out.name}: only part(s) {opts.parts} ran)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
