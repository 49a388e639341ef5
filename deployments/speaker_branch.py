"""The diarization branch of one request: the graph's second fan-out, beside ASR.

Each window's samples go to the diarization stage (``embed``) as soon as its part is planned, the
same moment they go to ASR, so the two stages work on a file at once and diarization adds only
its clustering to the wall time. Once every window is transcribed and embedded, the embeddings
go to one ``cluster`` call, and the segments get their speakers (``pipeline.speaker_assignment``).
A recording with a speaker per channel (``multichannel``) takes a :class:`ChannelBranch` instead:
one call on the upload itself, made when the request starts.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import numpy as np

from deployments.audio_parts import PlannedAudio
from deployments.audio_plan import Rejected, Upload
from deployments.known_speakers import REFERENCES, BadReference
from deployments.stage_calls import once_more_if_replica_died, stage_errors
from pipeline.diarization import Diarization, SpeakerCount, SpeakerEmbedding
from pipeline.errors import InvalidParameter
from pipeline.schemas import DiarizationResult
from pipeline.speaker_assignment import talk_time
from pipeline.windows import Window


class SpeakerBranch:
    """Embeddings asked for window by window, clustered once at the end."""

    def __init__(self, stage: Any, count: SpeakerCount, known: Mapping[str, np.ndarray] | None = None):
        """``stage`` is the diarization deployment's handle; ``known``, voice prints by name
        (:func:`voice_prints`) for the speakers found to be named after."""
        self.stage, self.count, self.known = stage, count, dict(known or {})
        self.responses: list = []
        """Every stage call made, so that a request that ends early can cancel them."""
        self._embeddings: list[asyncio.Future] = []

    def add(self, audio: np.ndarray, window: Window) -> None:
        """Ask for ``window``'s embeddings now; they are awaited in :meth:`speakers`."""
        call = once_more_if_replica_died(
            functools.partial(self.stage.embed.remote, audio, window),
            f"speakers of window {window.index}",
            self.responses,
        )
        self._embeddings.append(asyncio.ensure_future(call))

    async def speakers(self) -> Diarization:
        """The file's speaker turns, once every window added is embedded."""
        found: list[SpeakerEmbedding] = [e for part in await asyncio.gather(*self._embeddings) for e in part]
        diarization: Diarization = await once_more_if_replica_died(
            functools.partial(self.stage.cluster.remote, found, self.count, self.known),
            "the speakers",
            self.responses,
        )
        return diarization

    def cancel(self) -> None:
        """Stop the calls still running (the request ended early). Serve's ``cancel()`` re-raises
        the error of a call that already failed: nothing is left to stop there."""
        for task in self._embeddings:
            task.cancel()
        for response in self.responses:
            with suppress(Exception):
                response.cancel()


class ChannelBranch:
    """The turns of a recording with one speaker per channel: one call on the upload, asked for
    at once (it needs no windows), answered while the transcription runs."""

    def __init__(self, stage: Any, upload: Upload):
        self.responses: list = []
        call = once_more_if_replica_died(
            functools.partial(stage.channel_turns.remote, upload), "the speakers by channel", self.responses
        )
        self._turns = asyncio.ensure_future(call)

    def add(self, audio: np.ndarray, window: Window) -> None:
        """Nothing to do per window: the channels are read from the upload."""

    async def speakers(self) -> Diarization:
        answer: Diarization | Rejected = await self._turns
        if isinstance(answer, Rejected):
            raise answer.error
        return answer

    def cancel(self) -> None:
        self._turns.cancel()
        for response in self.responses:
            with suppress(Exception):
                response.cancel()


def speaker_branch(
    stage: Any, upload: Upload, count: SpeakerCount, known: Mapping[str, np.ndarray] | None, by_channel: bool
) -> SpeakerBranch | ChannelBranch:
    """The branch a request asks for: speakers told apart by channel, or by voice."""
    return ChannelBranch(stage, upload) if by_channel else SpeakerBranch(stage, count, known)


async def diarize_audio(
    stage: Any, audio: PlannedAudio, count: SpeakerCount, request_id: str | None, by_channel: bool = False
) -> DiarizationResult:
    """Who spoke when in a planned upload, without a transcript: the branch alone."""
    speakers = speaker_branch(stage, audio.parts.upload, count, None, by_channel)
    try:
        with stage_errors():
            async for part in audio.all_parts():
                for window, samples in zip(part.windows, part.samples, strict=True):
                    speakers.add(samples, window)
                if part.last:
                    audio.duration_s = part.planned_to_s
            turns = (await speakers.speakers()).turns
    finally:
        speakers.cancel()
        audio.parts.cancel()
    return DiarizationResult(
        request_id=request_id,
        duration_s=round(audio.duration_s, 3),
        turns=turns,
        speakers=talk_time(turns),
        total_s=round(time.perf_counter() - audio.started, 4),
    )


async def voice_prints(stage: Any, known: Mapping[str, bytes]) -> dict[str, np.ndarray]:
    """Known speakers' voice prints by name, from their reference clips; a clip the stage cannot
    use is refused (400) naming ``known_speaker_references``."""
    with stage_errors():
        answers = await asyncio.gather(
            *(
                once_more_if_replica_died(
                    functools.partial(stage.voice_print.remote, name, data), "a voice print"
                )
                for name, data in known.items()
            )
        )
    for answer in answers:
        if isinstance(answer, BadReference):
            raise InvalidParameter(answer.reason, REFERENCES)
    return dict(zip(known, answers, strict=True))
