"""Live transcription under load: N concurrent Realtime sessions (``/v1/realtime?intent=transcription``,
server VAD, 500 ms silence) each streaming real speech at real-time pace, for N = 1, 4, 8, 16. Prints
a table and writes its section of BENCHMARKS.md.

    .venv/bin/python bench/realtime.py [--config configs/tiny.yaml] [--sessions 1,4,8,16] [--seconds 60]

One graph served from the config (one ASR replica, autoscaling off, so the answer is what one
replica holds), the steps one after another against it, so they are measured side by side in one
run. Every session streams the same audio: ``harness.speech`` (the JFK clip with pauses of 0.6 to
12 s between, real speech so that VAD finds turns), its trailing silence cut to 1.5 s, resampled to
24 kHz PCM16 with FFmpeg's resampler, in 100 ms appends.

Choices, and why:

- Pacing by the wall clock: piece k goes at t0 + (k + 1) x 100 ms, as from a microphone (a piece
  goes once spoken), never ``sleep(0.1)`` after a send, so a late send is not hidden by the next.
  The server reads each session's socket itself (and stops reading while a session has more than
  ``max_pending_turns`` turns waiting), so a server that falls behind shows as send lag.
- Sessions start spread evenly over the first second, so their appends and VAD calls interleave as
  independent speakers' would, not in lockstep.
- All sessions in one asyncio loop, raw JSON events over ``websockets``, the events built before
  the clock starts: the client stays light next to the server (``bench/realtime_sessions.py``).
- Final latency: ``completed`` arrival minus when the audio at speech_stopped's ``audio_end_ms``
  was spoken (t0 + audio_end_ms); audio_end_ms is already 500 ms into the pause, so this is what
  the speaker waits once the server could know the turn ended: the 100 ms pieces, VAD's gathering
  (``vad_interval_s``), the final ASR pass. The server's view starts at speech_stopped's arrival.
- Keeping up: after the last append each session commits the rest of its buffer; that turn is done
  only once the server has read and transcribed everything before it. A session keeps up if no
  append went out more than 0.5 s late, that closing turn and every turn before it were done within
  5 s of the last append, no error came, and its final latency p95 is under 3 s (twice the 1.5 s
  target: a backlog growing through a run passes it; the target is judged on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, URL, app_args, config_line, machine, serve_and_measure, speech, write_section
from bench.realtime_sessions import (
    DRAIN_S,
    LATENCY_BOUND_S,
    MAX_SEND_LAG_S,
    append_events,
    run_step,
    summary,
)

WS_URL = URL.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
TARGET_SESSIONS, TARGET_P95_S = 8, 1.5
TRAILING_SILENCE_S = 1.5  # the last turn's 500 ms pause, VAD's gathering, and some to spare


def spoken(seconds: float) -> np.ndarray:
    """``harness.speech(seconds)`` with its trailing silence cut to ``TRAILING_SILENCE_S``."""
    audio = speech(seconds)
    end = int(np.flatnonzero(audio)[-1]) + 1
    return np.concatenate([audio[:end], np.zeros(int(TRAILING_SILENCE_S * 16000), np.float32)])


def num(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "tiny.yaml")
    parser.add_argument("--sessions", default="1,4,8,16", help="concurrent sessions per step")
    parser.add_argument("--seconds", type=float, default=60.0, help="speech each session streams")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    steps = [int(n) for n in opts.sessions.split(",")]
    audio = spoken(opts.seconds)
    events = append_events(audio)
    warm_events = append_events(spoken(1.0))  # one clip: models loaded, first VAD and ASR calls done
    rows: list[dict[str, float]] = []

    def work() -> list[float]:
        for n in steps:
            print(f"{n} session(s) x {audio.size / 16000:.0f} s ...", file=sys.stderr)
            sessions = asyncio.run(run_step(WS_URL, events, n))
            rows.append(summary(sessions))
            for s in sessions:
                for error in s.errors[:3]:
                    print(f"  error: {error}", file=sys.stderr)
            print(f"  {rows[-1]}", file=sys.stderr)
        return []

    serve_and_measure(
        app_args(opts.config, asr_replicas=1, max_batch_size=8),
        work,
        warmup=lambda: asyncio.run(run_step(WS_URL, warm_events, 1)),
    )

    table = [
        "| sessions | kept up | turns | final p50 s | final p95 s | server view p50 s | server view p95 s "
        "| delta interval p50 s | max send lag s | max drain s | errors | keeps up |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    table += [
        f"| {r['sessions']:.0f} | {r['kept_up']:.0f} | {r['turns']:.0f} | {num(r['final_p50'])} | "
        f"{num(r['final_p95'])} | {num(r['server_p50'])} | {num(r['server_p95'])} | {num(r['delta_p50'])} | "
        f"{num(r['send_lag'])} | {num(r['drain'])} | {r['errors']:.0f} | "
        f"{'yes' if r['kept_up'] == r['sessions'] else 'no'} |"
        for r in rows
    ]
    keeping_up = [int(r["sessions"]) for r in rows if r["kept_up"] == r["sessions"]]
    largest = f"{max(keeping_up)}" if keeping_up else f"none of {opts.sessions}"
    target = next((r for r in rows if r["sessions"] == TARGET_SESSIONS), None)
    if target is None:
        verdict = f"not measured (add {TARGET_SESSIONS} to --sessions)"
    else:
        met = target["kept_up"] == target["sessions"] and target["final_p95"] < TARGET_P95_S
        verdict = (
            f"{'met' if met else 'not met'}: {target['kept_up']:.0f} of {TARGET_SESSIONS} kept up, "
            f"final p95 {num(target['final_p95'])} s"
        )
    text = "\n".join(
        [
            "## Live transcription sessions (`bench/realtime.py`)",
            "",
            machine(),
            config_line(opts.config),
            "Command: `.venv/bin/python bench/realtime.py "
            f"--sessions {opts.sessions} --seconds {opts.seconds:g}`",
            "",
            f"One graph, one ASR replica (max_batch_size 8); each step's sessions stream the same "
            f"{audio.size / 16000:.0f} s of speech (JFK clip with pauses, 24 kHz PCM16, 100 ms appends "
            "on the wall clock, starts spread over 1 s), server VAD with 500 ms silence. Final latency: "
            "`completed` minus when the audio at speech_stopped's `audio_end_ms` was spoken; server view: "
            "`completed` minus speech_stopped's arrival. Percentiles over all turns of all sessions. Drain: "
            "last append to the end of a closing commit's turn (the server has read everything). A session "
            f"keeps up: send lag <= {MAX_SEND_LAG_S:g} s, drain <= {DRAIN_S:g} s, no error, final p95 < "
            f"{LATENCY_BOUND_S:g} s. Delta interval: between consecutive deltas of a turn; '-' when no "
            "turn had two (the generated test models say the same word whatever they hear, so a turn's "
            "text is agreed once): measure it with real models.",
            "",
            *table,
            "",
            f"- Largest N whose sessions all keep up: {largest}",
            f"- Target ({TARGET_SESSIONS} sessions keep up, final p95 < {TARGET_P95_S:g} s): {verdict}",
            "",
        ]
    )
    print(text)
    write_section(opts.out, "realtime", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
