"""Transcript output formats: plain text, SubRip (SRT) and WebVTT.

A diarized segment carries its speaker: WebVTT's own voice span (``<v A>``), which players show
as the speaker; SubRip has none, so the text starts with ``[A]``, the common convention."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.schemas import Segment, TranscriptionResult


def _timestamp(seconds: float, decimal: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_srt(segments: Sequence[Segment]) -> str:
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_srt_text(s)}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Sequence[Segment]) -> str:
    cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_vtt_text(s)}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def _srt_text(segment: Segment) -> str:
    text = segment.text.strip()
    return f"[{segment.speaker}] {text}" if segment.speaker else text


def _vtt_text(segment: Segment) -> str:
    text = segment.text.strip()
    if not segment.speaker:
        return text
    # A voice annotation is a tag: no "<", ">" or line break may stand in the name.
    speaker = " ".join(segment.speaker.replace("<", " ").replace(">", " ").split())
    return f"<v {speaker}>{text}"


def to_text(result: TranscriptionResult) -> str:
    """The punctuated text when the LLM's punctuation was accepted, else the raw text."""
    punctuated = result.punctuation.text
    return (punctuated if result.punctuation.applied and punctuated is not None else result.text) + "\n"


FORMATS = ("json", "text", "srt", "vtt")


def render(result: TranscriptionResult, fmt: str) -> str:
    if fmt == "json":
        return result.model_dump_json(indent=2) + "\n"
    if fmt == "text":
        return to_text(result)
    if fmt == "srt":
        return to_srt(result.segments)
    if fmt == "vtt":
        return to_vtt(result.segments)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
