"""Diarization beside ASR: what the diarization branch adds to a long file's wall time, and how
well it finds who spoke (DER). Prints a table and writes its section of BENCHMARKS.md.

    .venv/bin/python bench/diarization.py [--minutes 60] [--repeats 2]

One local Ray cluster serving ``configs/tiny.yaml`` with the benchmark Whisper (``bench.harness``)
and the diarization stage. The long file is a conversation assembled from real people's
recordings in ``../shared/fixtures`` (the tests' sets, ``tests/conversations.py``: each person's
speech cut at pauses into three turns, taken in turn, 0.4 s apart), repeated to ``--minutes``.
It goes through ``/v1/transcribe`` with and without ``diarize=true``, alternating, ``--repeats``
times each. DER (``pyannote.metrics``, collar 0.25 s, overlap skipped) is measured on the turns of
``/v1/audio/diarization`` for the shared two-speaker sample, the tests' assembled conversations,
and the long file. Speakers by channel (``multichannel=true``) are measured on a call assembled in
stereo (two people, each on a channel of their own, as the tests' ``stereo_call``), clean and with
each party leaking into the other's channel at -25 dB (echo), and on a stereo call as long as the
long file, through ``/v1/transcribe``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' conversations

from conversations import (
    FIXTURES,
    SR,
    conversation,
    der,
    der_parts,
    load_recordings,
    round_robin,
    speech_pieces,
    stereo_call,
    stereo_file,
)

from bench.harness import (
    ROOT,
    URL,
    bench_args,
    config_line,
    machine,
    models_line,
    serve_and_measure,
    wav_bytes,
)
from pipeline.rttm import read_rttm
from pipeline.schemas import SpeakerTurn
from pipeline.settings import AudioSettings
from pipeline.vad import SpeechDetector

SETS = {
    "two speakers (kennedy, libri1088)": ["kennedy", "libri1088"],
    "two speakers (libri1995, libri2412)": ["libri1995", "libri2412"],
    "three speakers (kennedy, libri1995, libri2412)": ["kennedy", "libri1995", "libri2412"],
    "three speakers (libri1088, kennedy, libri1995)": ["libri1088", "kennedy", "libri1995"],
}
LONG = ["kennedy", "libri1995", "libri1088", "libri2412"]


def long_conversation(minutes: float, recordings, detector) -> tuple[np.ndarray, list[SpeakerTurn]]:
    """The four people's turns in rounds until ``minutes`` of audio, and its known turns."""
    pieces = {name: speech_pieces(recordings[name], detector, 3) for name in LONG}
    one_round = [(name, pieces[name][i]) for i in range(3) for name in LONG]
    round_s = sum(piece.size for _, piece in one_round) / SR + 0.4 * len(one_round)
    return conversation(one_round * max(1, round(minutes * 60 / round_s)))


CALL = ("kennedy", "libri1995")
"""The two people of the stereo call: the first on the first channel."""


def long_call(minutes: float, recordings, detector) -> tuple[np.ndarray, list[SpeakerTurn]]:
    """The stereo call repeated to ``minutes``, and its known turns."""
    one, reference = stereo_call(recordings, detector, CALL)
    times = max(1, round(minutes * 60 / (one.shape[1] / SR)))
    length = one.shape[1] / SR
    turns = [
        t.model_copy(update={"start": t.start + k * length, "end": t.end + k * length})
        for k in range(times)
        for t in reference
    ]
    return np.tile(one, (1, times)), turns


def turns_of(data: bytes, name: str, **form: str) -> list[SpeakerTurn]:
    r = requests.post(
        f"{URL}/v1/audio/diarization",
        files={"file": (name, data)},
        data={"response_format": "rttm", **form},
        timeout=3600,
    )
    r.raise_for_status()
    return read_rttm(r.text).get(Path(name).stem, [])


def by_name(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """Channel speakers (A, B) as the call's people: a fixed mapping, so a swap counts."""
    return [t.model_copy(update={"speaker": CALL[ord(t.speaker) - ord("A")]}) for t in turns]


def transcribe(data: bytes, diarize: bool, **form: str) -> tuple[float, dict]:
    started = time.perf_counter()
    r = requests.post(
        f"{URL}/v1/transcribe",
        files={"file": ("talk.wav", data)},
        data={
            "language": "en",
            "punctuate": "false",
            "summarize": "false",
            "diarize": str(diarize).lower(),
            **form,
        },
        timeout=7200,
    )
    r.raise_for_status()
    return time.perf_counter() - started, r.json()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    opts = parser.parse_args()
    recordings, detector = load_recordings(), SpeechDetector(AudioSettings())
    sample = FIXTURES / "diarization" / "sample.wav"
    sample_reference = read_rttm(sample.with_suffix(".rttm").read_text())["sample"]
    sets = {label: round_robin(recordings, detector, names, 3) for label, names in SETS.items()}
    long_audio, long_reference = long_conversation(opts.minutes, recordings, detector)
    long_wav = wav_bytes(long_audio)
    call, call_reference = stereo_call(recordings, detector, CALL)
    calls = {"clean": call, "each party leaking in at -25 dB": call + 10 ** (-25 / 20) * call[::-1]}
    long_stereo, long_stereo_reference = long_call(opts.minutes, recordings, detector)
    long_stereo_file = stereo_file(long_stereo, "FLAC")
    measured: dict = {"plain": [], "diarized": [], "added": [], "by_channel": [], "channel_added": []}

    def work() -> list[float]:
        measured["der"] = {
            "shared two-speaker sample (30 s)": der(
                sample_reference, turns_of(sample.read_bytes(), "sample.wav")
            )
        }
        for label, (audio, reference) in sets.items():
            measured["der"][label] = der(reference, turns_of(wav_bytes(audio), "talk.wav"))
        for _ in range(opts.repeats):
            plain_s, _ = transcribe(long_wav, diarize=False)
            diarized_s, doc = transcribe(long_wav, diarize=True)
            measured["plain"].append(plain_s)
            measured["diarized"].append(diarized_s)
            measured["added"].append(doc["timings"]["diarization_s"])
            measured["speakers"] = [s["speaker"] for s in doc["speakers"]]
        measured["channels"] = {
            label: der_parts(
                call_reference,
                by_name(turns_of(stereo_file(audio, "FLAC"), "call.flac", multichannel="true")),
            )
            for label, audio in calls.items()
        }
        for _ in range(opts.repeats):
            channel_s, doc = transcribe(long_stereo_file, True, multichannel="true")
            measured["by_channel"].append(channel_s)
            measured["channel_added"].append(doc["timings"]["diarization_s"])
        long_channels = by_name(turns_of(long_stereo_file, "call.flac", multichannel="true"))
        measured["channels"][f"the long call ({long_stereo.shape[1] / SR / 60:.0f} min)"] = der_parts(
            long_stereo_reference, long_channels
        )
        long_found = turns_of(long_wav, "talk.wav")
        measured["der"][f"the long file ({long_audio.size / SR / 60:.0f} min, 4 speakers)"] = der(
            long_reference, long_found
        )
        measured["long_speakers"] = len({t.speaker for t in long_found})
        return []

    serve_and_measure(
        bench_args(), work, warmup=lambda: transcribe(wav_bytes(sets[next(iter(SETS))][0]), True)
    )
    plain, diarized = statistics.median(measured["plain"]), statistics.median(measured["diarized"])
    minutes = long_audio.size / SR / 60
    lines = [
        "## Diarization beside ASR (`bench/diarization.py`)",
        "",
        machine(),
        config_line(ROOT / "configs" / "tiny.yaml") + " Diarization: Resemblyzer's real GE2E weights.",
        models_line(),
        "Command: `.venv/bin/python bench/diarization.py "
        f"--minutes {opts.minutes:g} --repeats {opts.repeats}`",
        "",
        f"A {minutes:.0f}-minute conversation of 4 real speakers through `/v1/transcribe`, with and without"
        f" `diarize=true`, alternating, {opts.repeats} runs each (medians):",
        "",
        "| run | wall s | added after the last window (`timings.diarization_s`) |",
        "| --- | ---: | ---: |",
        f"| transcript only | {plain:.1f} | |",
        f"| transcript + speakers | {diarized:.1f} | {statistics.median(measured['added']):.2f} s |",
        f"| stereo call, transcript + speakers by channel | {statistics.median(measured['by_channel']):.1f} |"
        f" {statistics.median(measured['channel_added']):.2f} s |",
        "",
        f"- diarization adds {100 * (diarized / plain - 1):.0f}% wall time (target: at most 25%)",
        f"- speakers found in the diarized transcript: {', '.join(measured['speakers'])}",
        "",
        "DER through the graph (`/v1/audio/diarization`; speakers found from the data, no count given):",
        "",
        "| audio | DER | target |",
        "| --- | ---: | ---: |",
    ]
    for label, value in measured["der"].items():
        target = "15%" if "sample" in label else "10%"
        lines.append(f"| {label} | {100 * value:.1f}% | {target} |")
    lines += [
        "",
        f"- speakers found in the long file's turns: {measured['long_speakers']} (4 spoke)",
        "",
        "Speakers by channel (`multichannel=true`) on a stereo call of two real people (A, the first"
        " channel, taken as the first person: a swap counts as confusion):",
        "",
        "| call | DER | confusion | missed | false alarm |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, parts in measured["channels"].items():
        share = {name: 100 * parts[name] / parts["total"] for name in ("confusion", "missed detection")}
        lines.append(
            f"| {label} | {100 * parts['diarization error rate']:.1f}% | {share['confusion']:.1f}% |"
            f" {share['missed detection']:.1f}% | {100 * parts['false alarm'] / parts['total']:.1f}% |"
        )
    lines += [
        "",
        "- what is missed is the pauses inside a person's turn, which the assembled reference counts"
        " as speech (a turn is a piece of one recording from its first word to its last)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from bench.harness import write_section

    write_section(opts.out, "diarization", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
