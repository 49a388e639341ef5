"""Transcript output formats: plain text, SubRip (SRT) and WebVTT.

A diarized segment carries its speaker: WebVTT's own voice span (``<v A>``), which players show
as the speaker; SubRip has none, so the text starts with ``[A]``, the common convention. A
document with a translation (``translate_to``) renders the translation: its segments keep the
source's times, so the subtitles are in the language asked for, on the same cues."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipeline.llm_results import TranslatedSegment
from pipeline.schemas import Segment, TranscriptionResult


class Cue(Protocol):
    """What a subtitle cue is made of: a segment, or a translated segment."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def text(self) -> str: ...
    @property
    def speaker(self) -> str | None: ...


def _timestamp(seconds: float, decimal: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_srt(segments: Sequence[Cue]) -> str:
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_srt_text(s)}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Sequence[Cue]) -> str:
    cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_vtt_text(s)}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def _srt_text(segment: Cue) -> str:
    text = segment.text.strip()
    return f"[{segment.speaker}] {text}" if segment.speaker else text


def _vtt_text(segment: Cue) -> str:
    text = segment.text.strip()
    if not segment.speaker:
        return text
    # A voice annotation is a tag: no "<", ">" or line break may stand in the name.
    speaker = " ".join(segment.speaker.replace("<", " ").replace(">", " ").split())
    return f"<v {speaker}>{text}"


def subtitle_segments(result: TranscriptionResult) -> Sequence[Segment] | Sequence[TranslatedSegment]:
    """The translated segments when the document has a translation, else its segments."""
    return result.translation.segments if result.translation is not None else result.segments


def to_text(result: TranscriptionResult) -> str:
    """The translation when there is one; else the punctuated text when the LLM's punctuation was
    accepted, else the raw text."""
    if result.translation is not None:
        return result.translation.text + "\n"
    punctuated = result.punctuation.text
    return (punctuated if result.punctuation.applied and punctuated is not None else result.text) + "\n"


FORMATS = ("json", "text", "srt", "vtt")


def render(result: TranscriptionResult, fmt: str) -> str:
    if fmt == "json":
        return result.model_dump_json(indent=2) + "\n"
    if fmt == "text":
        return to_text(result)
    if fmt == "srt":
        return to_srt(subtitle_segments(result))
    if fmt == "vtt":
        return to_vtt(subtitle_segments(result))
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
