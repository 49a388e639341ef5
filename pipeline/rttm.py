"""Speaker turns as RTTM, the NIST format diarization tools read and write (``pyannote.metrics``,
``dscore``, md-eval): one ``SPEAKER`` line per turn, fields separated by spaces.

    SPEAKER <file> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>

A field cannot hold a space, so spaces in a file id or a speaker's name are written as ``_``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.schemas import SpeakerTurn


def _field(value: str) -> str:
    return "_".join(value.split()) or "<NA>"


def write_rttm(turns: Iterable[SpeakerTurn], file_id: str) -> str:
    """The turns of one file as RTTM text (times in seconds, to the millisecond)."""
    file = _field(file_id)
    return "".join(
        f"SPEAKER {file} 1 {turn.start:.3f} {turn.end - turn.start:.3f} <NA> <NA> "
        f"{_field(turn.speaker)} <NA> <NA>\n"
        for turn in turns
    )


def read_rttm(text: str) -> dict[str, list[SpeakerTurn]]:
    """The ``SPEAKER`` lines of RTTM text as turns per file id, in the order they appear; other
    record types and comments (``;;``) are skipped."""
    files: dict[str, list[SpeakerTurn]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"RTTM line {number} has {len(fields)} fields, a SPEAKER line needs 8 or more")
        start, duration = float(fields[3]), float(fields[4])
        turn = SpeakerTurn(start=start, end=round(start + duration, 6), speaker=fields[7])
        files.setdefault(fields[1], []).append(turn)
    return files
