"""The tables and notes of ``bench/preprocess.py``: what it measured, as BENCHMARKS.md shows it."""

from __future__ import annotations

import statistics
import textwrap
from dataclasses import dataclass, field
from typing import Any

MIB = 2**20
FORMAT_NAMES = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "ogg": "Ogg/Opus"}
#: The issue's numbers for the old main (not measured by this benchmark).
QUOTED_BEFORE = (
    "an hour of pure silence took 27 s through the graph, and a streamed hour's first segment came after 24 s"
)


def length(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds / 60:g} min"


@dataclass
class Report:
    opts: Any
    hour_s: float
    vad: list[tuple[str, float, int]] = field(default_factory=list)
    vad_same: bool = False
    in_process: dict[str, tuple[float, float, int, int]] = field(default_factory=dict)
    """file -> (median s, audio s, windows, upload bytes)."""
    stage: Any = None
    """``bench.preprocess_stage.StageResults``."""
    graph: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    """tree -> file -> the runs' event times."""
    sizes: dict[str, int] = field(default_factory=dict)

    def label(self, name: str) -> str:
        fmt, hours = name.split("-")
        kind = "silence, WAV" if fmt == "silence" else FORMAT_NAMES[fmt]
        return f"{kind} {length(int(hours[:-1]) * self.hour_s)}"

    def mib(self, name: str) -> str:
        return f"{self.sizes[name] / MIB:.0f}"

    def text(self, parts: list[int], machine: str, config: str) -> str:
        o = self.opts
        before = f" --before-ref {o.before_ref}" if o.before_ref else ""
        lines = [
            "## Preprocessing (`bench/preprocess.py`)",
            "",
            machine,
            config,
            f"Command: `.venv/bin/python bench/preprocess.py --minutes {o.minutes:g} --repeats {o.repeats}"
            f"{before}`",
            "",
            *_para(
                f'"The hour" is {length(self.hour_s)} of the JFK clip again and again with pauses of '
                "0.6-12 s (about 70 % speech), encoded with PyAV: WAV 16 kHz, FLAC and MP3 44.1 kHz, "
                f"Ogg/Opus 48 kHz, mono. Times are medians of {o.repeats} runs; x real time is audio "
                "seconds per wall second."
            ),
        ]
        for part in parts:
            lines += ["", *getattr(self, f"_part{part}")()]
        return "\n".join(lines) + "\n"

    def _part1(self) -> list[str]:
        (_, old_s, old_n), (_, new_s, new_n) = self.vad
        rows = [
            f"| {name} | {s * 3600 / self.hour_s:.1f} | {self.hour_s / s:.0f}x | {n} |"
            for name, s, n in self.vad
        ]
        return [
            "### 1. VAD alone, old vs new (one thread)",
            "",
            *_para(
                "Silero on the decoded hour with the settings' VAD options, `torch.set_num_threads(1)` "
                "(onnxruntime runs one thread by itself)."
            ),
            "",
            "| VAD path | s per hour of audio | x real time | speech spans |",
            "| --- | ---: | ---: | ---: |",
            *rows,
            "",
            f"- new vs old: {old_s / new_s:.1f}x faster; the spans are "
            f"{'identical' if self.vad_same else f'not identical ({old_n} vs {new_n})'}.",
            f"- target for the new path, >= 600x real time: {_met(self.hour_s / new_s >= 600)}.",
        ]

    def _part2(self) -> list[str]:
        rows = [
            f"| {self.label(name)} | {size / MIB:.0f} | {s * 3600 / audio_s:.1f} | {audio_s / s:.0f}x | {n} |"
            for name, (s, audio_s, n, size) in self.in_process.items()
        ]
        return [
            "### 2. Decode + VAD in one process",
            "",
            *_para(
                "`plan_in_chunks` over the file's bytes, one thread: decode (and resample) front to back, "
                "VAD a chunk at a time, windows cut: what one preprocess replica does for one file."
            ),
            "",
            "| file | upload MiB | s per hour of audio | x real time | windows |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
        ]

    def _part3(self) -> list[str]:
        one, two = self.stage.throughput[1], self.stage.throughput[2]
        rows = []
        for name, a in one.items():
            b = two[name]
            how = f"chunked, on {b.replicas_used} replica(s)" if b.chunked else "one replica, front to back"
            rows.append(
                f"| {self.label(name)} | {self.mib(name)} | {how} | {a.wall_s:.2f} | "
                f"{a.audio_s / a.wall_s:.0f}x | {b.wall_s:.2f} | {b.audio_s / b.wall_s:.0f}x | "
                f"{a.wall_s / b.wall_s:.2f}x |"
            )
        return [
            "### 3. One file through the preprocess stage (Serve), 1 and 2 replicas",
            "",
            *_para(
                "From the driver's event loop, as the ingress does it: the bytes into the object store "
                "(4 MiB chunks), the probe, then `AudioParts(...).stream()` to its last part. "
                "Replicas have 0.5 CPU each. Long WAV and FLAC files are cut into chunks scanned on the "
                "replicas at once, then cut into windows; MP3 cannot seek exactly, so one replica decodes "
                "it front to back (expected: it gains nothing from a second replica). A replica runs its "
                "calls in threads (onnxruntime, at least, releases the GIL), so one replica with several "
                "chunks in flight already uses more than one core: 0.5 CPU is Ray's reservation, not a "
                "limit. Times include putting the upload into the object store."
            ),
            "",
            "| file | upload MiB | how (2 replicas) | 1 replica s | x real time | 2 replicas s | x real time "
            "| 2 vs 1 |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"- target, the hour of FLAC at >= 400x real time with 2 replicas: "
            f"{_met(two['flac-1h'].audio_s / two['flac-1h'].wall_s >= 400)}.",
        ]

    def _part4(self) -> list[str]:
        medians = {
            (tree, name): {
                k: statistics.median(r[k] for r in runs) for k in set.intersection(*map(set, runs))
            }
            | {"runs": len(runs)}
            for tree, files in self.graph.items()
            for name, runs in files.items()
        }
        rows = []
        for name in ("silence-1h", "wav-1h", "wav-2h"):
            for tree in self.graph:
                t = medians[tree, name]
                progress = f"{t['progress']:.1f}" if "progress" in t else "-"
                segment = f"{t['segment']:.1f}" if "segment" in t else "-"
                after = f"{t['segment'] - t['upload']:.1f}" if "segment" in t else "-"
                document = f"{t['document']:.1f}" if "document" in t else "(closed)"
                rows.append(
                    f"| {self.label(name)} | {tree} | {t['runs']:.0f} | {t['upload']:.1f} | "
                    f"{progress} | {segment} | {after} | {document} |"
                )
        now = medians["this tree", "wav-2h"]
        notes = [
            "- target, a two-hour file's first segment within 5 s of the upload's end: "
            f"{_met(now['segment'] - now['upload'] <= 5)}."
        ]
        ref = self.opts.before_ref
        if ref:

            def faster(name: str, event: str) -> float:
                return medians[ref, name][event] / medians["this tree", name][event]

            notes.append(
                f"- `{ref}` (before) was measured in the same run, from a worktree of it. This tree is "
                f"{faster('silence-1h', 'document'):.1f}x sooner with the silent hour's document, "
                f"{faster('wav-1h', 'document'):.2f}x with the speech hour's, and "
                f"{faster('wav-2h', 'segment'):.1f}x with the two-hour file's first segment."
            )
        else:
            notes.append(
                f"- before (quoted from the issue, measured on the old main, not here): {QUOTED_BEFORE}."
            )
        return [
            "### 4. The whole graph over HTTP (`stream=true`)",
            "",
            *_para(
                "The config served with 2 preprocess and 2 ASR replicas; `POST /v1/transcribe` with "
                "`stream=true`, language en, no punctuation or summary. Seconds from the request's start "
                "to: the body's last byte sent (upload), the first `progress` event (upload, probe and "
                "the first planned part), the first `segment`, the `document`. The two-hour file's stream "
                "is closed after its first segment; the speech hour runs once (its document waits for "
                "ASR on every window, on this machine's tiny models)."
            ),
            "",
            "| file | code | runs | upload s | first progress s | first segment s | segment after upload s "
            "| document s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            *notes,
        ]

    def _part5(self) -> list[str]:
        rows, memory = [], self.stage.memory
        for name, m in memory.items():
            how = "chunked" if m.run.chunked else "front to back"
            decoded = m.run.audio_s * 16000 * 4 / MIB
            rows.append(
                f"| {self.label(name)} | {how} | {self.mib(name)} | {decoded:.0f} | "
                f"{m.heap_growth / MIB:.0f} | {m.rss_growth / MIB:.0f} | {m.run.wall_s:.1f} |"
            )
        return [
            "### 5. Peak memory of one preprocess replica",
            "",
            *_para(
                "One replica (so every chunk in flight is on it), `malloc_trim` in it first, then its "
                "`/proc` sampled every 10 ms while it preprocesses the file. Heap is RSS less the object "
                "store's shared pages (the windows it puts there); growth is over the value before the file."
            ),
            "",
            "| file | how | upload MiB | decoded MiB if held whole | heap growth MiB | RSS growth MiB "
            "| wall s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            *(
                self._growth(fmt, memory[f"{fmt}-4h"].heap_growth, memory[f"{fmt}-1h"].heap_growth)
                for fmt in ("flac", "ogg")
            ),
        ]

    def _growth(self, fmt: str, long: int, short: int) -> str:
        """Whether four times the audio took more memory (more than a quarter, or 16 MiB, above)."""
        grows = long > 1.25 * short + 16 * MIB
        return (
            f"- {FORMAT_NAMES[fmt]}: heap growth {long / MIB:.0f} MiB for {length(4 * self.hour_s)}, "
            f"{short / MIB:.0f} MiB for {length(self.hour_s)}: "
            + (
                "**it grows with the file's length**."
                if grows
                else "it does not grow with the file's length."
            )
        )


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _para(text: str) -> list[str]:
    return textwrap.wrap(text, 100)
