"""Speakers on a transcript: each segment and word gets the speaker turn that overlaps it most.

Whisper's segments come from the ASR branch and the turns from the diarization branch of the
graph, over the same timeline, so they are joined by time alone. A segment that holds a change of
speaker (Whisper cuts at pauses, not at voices) is split where its words change speaker, when it
has word times; without them it goes whole to the speaker who has most of it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from pipeline.schemas import Segment, SpeakerTalk, SpeakerTurn, Word


class SpeakerTimeline:
    """Turns in time order, asked which speaker has most of a stretch of time."""

    def __init__(self, turns: Sequence[SpeakerTurn]):
        self.turns = sorted(turns, key=lambda t: (t.start, t.end))
        self._starts = [t.start for t in self.turns]
        self._longest = max((t.end - t.start for t in self.turns), default=0.0)

    def speaker(self, start: float, end: float) -> str | None:
        """The speaker with the most time in ``[start, end]``; for a stretch no turn overlaps, the
        speaker of the nearest turn; ``None`` when there are no turns."""
        if not self.turns:
            return None
        first = bisect.bisect_left(self._starts, start - self._longest)
        last = bisect.bisect_right(self._starts, end)
        overlap: dict[str, float] = {}
        for turn in self.turns[first:last]:
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            return max(overlap, key=lambda speaker: overlap[speaker])
        middle = (start + end) / 2
        nearest = min(self.turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0))
        return nearest.speaker


def _split(segment: Segment, words: list[Word]) -> list[Segment]:
    """``segment`` cut where consecutive words change speaker (token ids cannot be split by word, so
    pieces of a split segment carry none)."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    if len(runs) == 1:
        return [segment.model_copy(update={"words": words, "speaker": words[0].speaker})]
    pieces = []
    for i, run in enumerate(runs):
        start = segment.start if i == 0 else run[0].start
        end = segment.end if i == len(runs) - 1 else run[-1].end
        text = " " + " ".join(word.word for word in run)
        pieces.append(
            segment.model_copy(
                update={
                    "start": start,
                    "end": max(start, end),
                    "text": text,
                    "tokens": [],
                    "words": run,
                    "speaker": run[0].speaker,
                }
            )
        )
    return pieces


def assign_speakers(segments: Sequence[Segment], turns: Sequence[SpeakerTurn]) -> list[Segment]:
    """The segments with their speakers (and their words' speakers), a segment whose words change
    speaker split at each change; ids numbered again in order."""
    timeline = SpeakerTimeline(turns)
    out: list[Segment] = []
    for segment in segments:
        if segment.words:
            words = [
                word.model_copy(update={"speaker": timeline.speaker(word.start, word.end)})
                for word in segment.words
            ]
            out += _split(segment, words)
        else:
            out.append(segment.model_copy(update={"speaker": timeline.speaker(segment.start, segment.end)}))
    return [segment.model_copy(update={"id": i}) for i, segment in enumerate(out)]


def talk_time(turns: Sequence[SpeakerTurn]) -> list[SpeakerTalk]:
    """Each speaker's seconds of speech and turns, in order of first appearance."""
    talk: dict[str, SpeakerTalk] = {}
    for turn in sorted(turns, key=lambda t: t.start):
        known = talk.get(turn.speaker, SpeakerTalk(speaker=turn.speaker, talk_s=0.0, turns=0))
        talk[turn.speaker] = SpeakerTalk(
            speaker=turn.speaker, talk_s=round(known.talk_s + turn.end - turn.start, 3), turns=known.turns + 1
        )
    return list(talk.values())
