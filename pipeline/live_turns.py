"""Turns in a live session, from Silero's speech probabilities, and partial text that never changes.

Why a state machine over per-frame probabilities rather than :func:`silero_vad.get_speech_timestamps`
on the audio so far: a session's audio never ends, so its turns must come out as the frames arrive,
each frame looked at once, with the same result however the frames are batched. The rules are
Silero's (speech from the first frame at ``threshold``, silence below ``threshold - 0.15`` so that
a wavering probability does not end a turn) with OpenAI's server-VAD options and offsets: a turn
starts ``prefix_padding_ms`` before its first speech frame and ends ``silence_duration_ms`` into the
silence after it. The module is torch-free: the caller runs Silero and hands over probabilities.

Why a turn is cut at its quietest frame near ``max_turn_s``: Whisper reads 30 s at a time, and a
monologue without a long pause would otherwise grow past that; cutting inside a word garbles it.
The next turn starts at the cut when speech goes on, so no audio is lost between them.

Why partial text is given out only where two passes agree (LocalAgreement-2, as whisper_streaming
does it): each pass re-reads the turn so far, and its last words change as more audio arrives;
what two consecutive passes agree on rarely changes again, and a delta sent cannot be taken back.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import InvalidParameter
from pipeline.vad import FRAME

SAMPLE_RATE = 16_000
HYSTERESIS = 0.15  # Silero's: speech ends below threshold - 0.15, not just below threshold


@dataclass(frozen=True)
class TurnDetection:
    """A session's server VAD options, with OpenAI's names."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InvalidParameter(
                f"turn_detection.threshold must be in (0, 1]; got {self.threshold}.",
                "turn_detection.threshold",
            )
        for name in ("prefix_padding_ms", "silence_duration_ms"):
            if getattr(self, name) < 0:
                raise InvalidParameter(
                    f"turn_detection.{name} must be >= 0; got {getattr(self, name)}.",
                    f"turn_detection.{name}",
                )


@dataclass(frozen=True)
class TurnEvent:
    kind: Literal["started", "stopped"]
    sample: int  # offset in the session's 16 kHz audio


class TurnDetector:
    """Turns of speech in a session, from the speech probability of each consecutive frame."""

    def __init__(self, options: TurnDetection, max_turn_s: float = 30.0, cut_search_s: float = 5.0):
        self.options = options
        self._quiet = max(options.threshold - HYSTERESIS, 0.01)  # Silero's floor for its neg_threshold
        self._padding = round(options.prefix_padding_ms * SAMPLE_RATE / 1000)
        self._silence_frames = max(1, math.ceil(options.silence_duration_ms * SAMPLE_RATE / 1000 / FRAME))
        self._max = round(max_turn_s * SAMPLE_RATE)
        self._search = round(cut_search_s * SAMPLE_RATE)
        if not FRAME <= self._search <= self._max - FRAME:
            raise ValueError(f"cut_search_s must be from 32 ms to max_turn_s - 32 ms; got {cut_search_s}.")
        if self._padding > self._max - 2 * FRAME:  # a turn's first two frames must fit in it
            raise InvalidParameter(
                f"turn_detection.prefix_padding_ms must be at most {1000 * max_turn_s - 64:.0f} "
                f"(a turn lasts at most {max_turn_s:g} s); got {options.prefix_padding_ms}.",
                "turn_detection.prefix_padding_ms",
            )
        self._frames = 0  # frames pushed so far
        self._recent: deque[float] = deque(maxlen=self._search // FRAME + 4)  # enough for a cut's search
        self._start: int | None = None  # the open turn's first sample
        self._silent_since: int | None = None  # the open turn's candidate silence: its first frame
        self._floor = 0  # no turn starts before this: the previous turn's end, or the last reset

    @property
    def in_turn(self) -> bool:
        return self._start is not None

    @property
    def turn_start(self) -> int | None:
        return self._start

    def push(self, probabilities: Sequence[float]) -> list[TurnEvent]:
        """The events of the next frames, in order: frame ``i`` of the session covers samples
        ``[i * FRAME, (i + 1) * FRAME)``."""
        events: list[TurnEvent] = []
        for p in probabilities:
            self._recent.append(float(p))
            self._frames += 1
            events += self._step(self._frames - 1, float(p))
        return events

    def reset(self, at_sample: int) -> None:
        """The client cleared or committed the buffer up to ``at_sample``: the open turn, if any, is
        dropped without an event, and no turn starts before ``at_sample``."""
        self._start = None
        self._silent_since = None
        self._floor = at_sample

    def _step(self, i: int, p: float) -> list[TurnEvent]:
        begin, end = i * FRAME, (i + 1) * FRAME
        if self._start is None:
            if p < self.options.threshold or end <= self._floor:  # silence, or audio already cleared
                return []
            self._start = max(begin - self._padding, self._floor, 0)
            self._silent_since = None
            return [TurnEvent("started", self._start)]
        if end - self._start > self._max:
            return self._cut(i, self._start)
        if p >= self.options.threshold:
            self._silent_since = None
        elif p < self._quiet and self._silent_since is None:
            self._silent_since = i
        if self._silent_since is not None and i + 1 - self._silent_since >= self._silence_frames:
            self._start = self._silent_since = None
            self._floor = end
            return [TurnEvent("stopped", end)]
        return []

    def _cut(self, i: int, start: int) -> list[TurnEvent]:
        """Frame ``i`` would take the open turn past ``max_turn_s``: end it in the middle of its
        quietest frame of the last ``cut_search_s``, and go over the frames after the cut again.

        They are gone over as between turns, with the previous turn ending at the cut: in the
        middle of speech the next frame at the threshold starts the next turn at the cut (its
        padding reaches back to it); if the speaker had just stopped, the silence after the cut
        becomes no turn of its own.
        """
        limit = start + self._max
        # Frames whose middle lies in [limit - search, limit]: frame i ends past limit, so all are in.
        first = max(math.ceil((limit - self._search - FRAME // 2) / FRAME), 0)
        last = (limit - FRAME // 2) // FRAME
        quietest = min(range(first, last + 1), key=self._probability)
        cut = quietest * FRAME + FRAME // 2
        self._start = self._silent_since = None
        self._floor = cut
        events = [TurnEvent("stopped", cut)]
        for j in range(quietest + 1, i + 1):
            events += self._step(j, self._probability(j))
        return events

    def _probability(self, frame: int) -> float:
        return self._recent[frame - (self._frames - len(self._recent))]


_WORD = re.compile(r"\s*\S+|\s+")  # a word with the whitespace before it (or trailing whitespace)


def _words(text: str) -> list[str]:
    """``text`` split into words that join back into ``text`` exactly."""
    return _WORD.findall(text)


class StableText:
    """Text two consecutive passes agree on, given out once: deltas are never taken back."""

    def __init__(self) -> None:
        self.sent = ""
        self._sent_words: list[str] = []
        self._previous: list[str] | None = None

    def update(self, text: str) -> str:
        """A partial pass's whole text; returns the new delta ("" if none).

        The delta is what this pass and the previous one agree on (their common words from the
        start) beyond :attr:`sent`, given only while that agreement still begins with what was sent.
        """
        current = _words(text)
        previous, self._previous = self._previous, current
        if previous is None:
            return ""
        agreed = _common_prefix(previous, current)
        n = len(self._sent_words)
        if len(agreed) <= n or agreed[:n] != self._sent_words:
            return ""
        delta = "".join(agreed[n:])
        self._sent_words = agreed
        self.sent += delta
        return delta

    def finish(self, text: str) -> str | None:
        """The final pass: the rest to send if ``text`` begins with the words sent, else None (the
        final text disagrees with the deltas; :attr:`sent` is left as it is)."""
        final = _words(text)
        n = len(self._sent_words)
        if final[:n] != self._sent_words:
            return None
        rest = "".join(final[n:])
        self._sent_words = final
        self.sent += rest
        return rest


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
