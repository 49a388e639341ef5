"""A live session's audio turned into turns and transcripts, over the graph's stages.

What costs CPU stays off the ingress's event loop: resampling runs in a worker thread, VAD in the
preprocessing stage (``live_speech``; the session sends Silero's state along, so any replica
serves any session's next frames), Whisper in the ASR stage as ordinary ``transcribe`` calls,
batched with other sessions' turns and with files' windows.

Partial results: while a turn is spoken, the turn so far goes to ASR after each
``partial_interval_s`` of new audio (one pass in flight per session, and passes no closer than
twice the last one's latency, so a loaded ASR stage gets fewer passes, not a backlog), and the text two
consecutive passes agree on goes out as ``delta`` events (:class:`pipeline.live_turns.StableText`).
When the turn ends, the whole turn is transcribed once more and ``completed`` carries it, after
a last ``delta`` with the rest of its text, so a turn's deltas add up to its transcript. Turns'
transcripts go out in turn order. A turn whose ASR replica died is sent once more.

Memory: the audio kept is the open turn (at most ``max_turn_s``) or the uncommitted buffer (at
most ``max_buffer_s``); committed turns waiting for ASR are at most ``max_pending_turns``, past
which the session stops reading from the socket until one is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from ray.exceptions import RayActorError

from deployments.app_args import RealtimeSettings
from deployments.http_errors import ApiError
from deployments.metrics import RealtimeMetrics
from deployments.realtime_events import (
    committed,
    new_item_id,
    speech_started,
    speech_stopped,
    transcription_completed,
    transcription_delta,
    transcription_failed,
)
from deployments.realtime_protocol import RealtimeProtocolError
from deployments.realtime_session import SessionConfig
from deployments.stage_calls import once_more_if_replica_died, stage_errors
from pipeline.decoding import DecodeOptions
from pipeline.document import transcript_text
from pipeline.live_audio import LiveAudioDecoder
from pipeline.live_buffer import LiveBuffer
from pipeline.live_turns import SAMPLE_RATE as RATE
from pipeline.live_turns import StableText, TurnDetector
from pipeline.schemas import WindowTranscript
from pipeline.vad import FRAME, VadStream
from pipeline.windows import Window

log = logging.getLogger("ray.serve")

MIN_COMMIT_S = 0.1  # OpenAI refuses to commit less than 100 ms of audio


class LiveTranscriber:
    """A session's audio, VAD, turns and their transcripts; events go out through ``send``."""

    def __init__(
        self,
        preprocess: Any,
        asr: Any,
        settings: RealtimeSettings,
        metrics: RealtimeMetrics,
        default_language: str | None,
        send: Callable[[dict], Awaitable[None]],
    ):
        self.preprocess, self.asr, self.settings, self.metrics = preprocess, asr, settings, metrics
        self.default_language, self.send = default_language, send
        self.config = SessionConfig()
        self.decoder = LiveAudioDecoder(self.config.format)
        self.audio = LiveBuffer()
        self.vad_state, self.vad_done = VadStream(), 0
        self.turns: TurnDetector | None = self._detector()
        self.turn_start = 0  # where the audio to commit next starts
        self.item_id: str | None = None  # the turn being spoken (server VAD)
        self.previous_item_id: str | None = None
        self.stable = StableText()
        self.partial: asyncio.Task | None = None
        self.partial_from = 0  # audio received when the last partial pass started
        self.partial_s = 0.0  # how long the last partial pass took
        self.finals: deque[asyncio.Task] = deque()

    def configure(self, config: SessionConfig) -> None:
        """A ``session.update``: a new format starts a new decoder, new turn detection a new detector."""
        previous, self.config = self.config, config
        if config.format != previous.format:
            self.decoder = LiveAudioDecoder(config.format)
        if config.turn_detection != previous.turn_detection:
            self.turns = self._detector()
            self._start_over(self.audio.end)

    async def commit(self, event_id: str | None) -> None:
        end = self.audio.end
        held = end - max(self.turn_start, self.audio.start)
        if held < MIN_COMMIT_S * RATE:
            raise RealtimeProtocolError(
                f"The buffer holds {held / RATE * 1000:.0f} ms of audio; a commit "
                f"needs at least {MIN_COMMIT_S * 1000:.0f} ms. Append audio first.",
                "input_audio_buffer_commit_empty",
                None,
                event_id,
            )
        await self._commit(self.turn_start, end)
        self._start_over(end)

    def held_s(self) -> float:
        """Seconds of audio held: the open turn or the uncommitted buffer, and what awaits VAD."""
        return (self.audio.end - self.audio.start) / RATE

    def clear(self) -> None:
        self._start_over(self.audio.end)

    def cancel(self) -> None:
        """The client left: stop the passes and turns in flight, and their ASR calls."""
        for task in [self.partial, *self.finals]:
            if task is not None:
                task.cancel()  # each cancels its ASR call (see _transcribe)

    def _detector(self) -> TurnDetector | None:
        options = self.config.turn_detection
        return TurnDetector(options, max_turn_s=self.settings.max_turn_s) if options else None

    def _start_over(self, at: int) -> None:
        """Nothing before ``at`` is committed again; an open turn is dropped."""
        if self.partial is not None:
            self.partial.cancel()
        self.turn_start, self.item_id, self.stable = at, None, StableText()
        if self.turns is not None:
            self.turns.reset(at)
        self.audio.drop_before(min(at, self.vad_done))

    async def append(self, payload: bytes) -> None:
        samples = await asyncio.to_thread(self.decoder.decode, payload)
        self.audio.append(samples)
        if self.turns is None:  # manual commit: no audio waits for VAD
            self.vad_done = self.audio.end
        self.metrics.audio_seconds.inc(len(samples) / RATE)
        if self.turns is not None and self.audio.end - self.vad_done >= self.settings.vad_interval_s * RATE:
            await self._detect_turns()
        if self.item_id is not None and self._partial_due():
            self.partial_from = self.audio.end
            audio = self.audio.slice(self.turn_start, self.audio.end)
            self.partial = asyncio.create_task(self._partial(self.item_id, audio, self.turn_start))

    # --- turns --------------------------------------------------------------------------------

    async def _detect_turns(self) -> None:
        assert self.turns is not None
        end = self.vad_done + (self.audio.end - self.vad_done) // FRAME * FRAME
        frames = self.audio.slice(self.vad_done, end)
        with stage_errors():
            probabilities, self.vad_state = await once_more_if_replica_died(
                lambda: self.preprocess.live_speech.remote(frames, self.vad_state), "live VAD"
            )
        self.vad_done = end
        for turn in self.turns.push(probabilities):
            if turn.kind == "started":
                self.turn_start, self.item_id, self.stable = turn.sample, new_item_id(), StableText()
                self.partial_from = turn.sample
                await self.send(speech_started(self.item_id, turn.sample * 1000 // RATE))
            else:
                item_id = self.item_id or new_item_id()
                await self.send(speech_stopped(item_id, turn.sample * 1000 // RATE))
                await self._commit(self.turn_start, turn.sample, item_id)
                self.turn_start, self.item_id = turn.sample, None
        # Keep the open turn, or else what the next turn's padding may reach back to.
        self.audio.drop_before(
            self.turn_start if self.item_id else max(self.turn_start, self.vad_done - self._padding())
        )

    def _padding(self) -> int:
        options = self.config.turn_detection
        return options.prefix_padding_ms * RATE // 1000 if options else 0

    def _partial_due(self) -> bool:
        """A pass at most every ``partial_interval_s`` of audio, and no more often than twice what
        the last pass took: when ASR is loaded, partial passes thin out and turns' final passes,
        which the speaker waits for, keep the capacity."""
        interval = self.settings.partial_interval_s
        return (
            interval > 0
            and (self.partial is None or self.partial.done())
            and self.audio.end - self.partial_from >= max(interval, 2 * self.partial_s) * RATE
        )

    async def _partial(self, item_id: str, audio: np.ndarray, start: int) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            transcript = await self._transcribe(audio, start)
        except (ApiError, RayActorError) as exc:
            log.warning("a partial pass of %s failed: %s", item_id, exc)
            return
        self.partial_s = loop.time() - began
        self.metrics.partial_seconds.observe(self.partial_s)
        if item_id == self.item_id:  # the turn is still being spoken
            delta = self.stable.update(transcript_text(transcript.segments))
            if delta:
                await self.send(transcription_delta(item_id, delta))

    async def _commit(self, start: int, end: int, item_id: str | None = None) -> None:
        item_id = item_id or new_item_id()
        await self.send(committed(item_id, self.previous_item_id))
        self.previous_item_id = item_id
        if self.partial is not None:
            self.partial.cancel()
        audio, stable = self.audio.slice(start, end), self.stable
        previous = self.finals[-1] if self.finals else None
        self.finals.append(asyncio.create_task(self._final(item_id, audio, start, stable, previous)))
        while self.finals and self.finals[0].done():
            self.finals.popleft()
        if len(self.finals) > self.settings.max_pending_turns:
            await asyncio.wait([self.finals[0]])

    async def _final(
        self, item_id: str, audio: np.ndarray, start: int, stable: StableText, previous: asyncio.Task | None
    ) -> None:
        loop = asyncio.get_running_loop()
        ended = loop.time()
        try:
            transcript: WindowTranscript | None = await self._transcribe(audio, start)
            failure = None
        except (ApiError, RayActorError) as exc:
            transcript, failure = None, exc
        if previous is not None:  # completed events go out in turn order
            await asyncio.wait([previous])
        if transcript is None:
            code = getattr(failure, "code", "stage_unavailable")
            await self.send(
                transcription_failed(item_id, code, f"The turn could not be transcribed: {failure}")
            )
            self.metrics.turns.inc(tags={"outcome": "failed"})
            return
        text = transcript_text(transcript.segments)
        rest = stable.finish(text)
        if rest:
            await self.send(transcription_delta(item_id, rest))
        await self.send(transcription_completed(item_id, text, len(audio) / RATE))
        self.metrics.final_seconds.observe(loop.time() - ended)
        self.metrics.turns.inc(tags={"outcome": "completed"})

    async def _transcribe(self, audio: np.ndarray, start: int) -> WindowTranscript:
        window = Window(0, start, start + len(audio), RATE)
        language = self.config.language or self.default_language
        options = DecodeOptions(prompt=self.config.prompt)
        calls: list = []
        try:
            with stage_errors():
                return await once_more_if_replica_died(
                    lambda: self.asr.transcribe.remote(audio, window, language, options), "a live turn", calls
                )
        except asyncio.CancelledError:  # the client left or the turn was dropped: ASR stops too
            for call in calls:
                call.cancel()
            raise
