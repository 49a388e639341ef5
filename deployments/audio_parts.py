"""A file's windows as the preprocessing stage plans them, part by part, for the driver.

Two ways, chosen from what the container declares (``probe``):

- a long file in a format that seeks exactly (wav, flac) is cut into chunks that go to several
  preprocess replicas at once (``chunks_in_flight`` per file); the driver stitches their speech
  into windows (``pipeline.speech_windows``) and has each settled run of windows decoded
  (``cut``), so ASR starts on the first minutes while later chunks are still
  being decoded;
- anything else is decoded by one replica, front to back, which streams the parts as they settle
  (``plan``, a Serve streaming call).

Either way the parts come in window order, a replica that dies is replaced by sending its call
again (a streamed plan resumes after the windows already received), a replica at its decoded-audio
budget is asked again for a few seconds before the request gets a 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any

from ray.exceptions import RayActorError

from deployments.audio_plan import AudioPart, AudioProbe, Busy, Rejected, ScannedChunk, Upload
from deployments.http_errors import Overloaded
from deployments.protocol import WindowProgress
from deployments.stage_calls import once_more_if_replica_died
from pipeline.settings import AudioSettings, VadOptions
from pipeline.speech_windows import Chunk, ChunkSpeech, WindowStitcher, plan_chunks
from pipeline.windows import Window

log = logging.getLogger("ray.serve")

SAMPLE_RATE = 16000
#: How long a call refused for lack of decoding room is tried again before the request gets a 503.
BUSY_RETRY_S = 5.0
BUSY_PAUSE_S = 0.25


class AudioParts:
    """The windows of one upload, as :class:`AudioPart`s in order."""

    def __init__(
        self,
        preprocess: Any,
        settings: AudioSettings,
        upload: Upload,
        vad: VadOptions | None,
    ):
        self.preprocess, self.settings, self.upload, self.vad = preprocess, settings, upload, vad
        self.probe: AudioProbe | None = None
        """What the container declares: the first answer of the streamed plan."""
        self.responses: list = []
        """Every stage call made, so that a request that ends early can cancel them."""
        self.replicas: Counter[str] = Counter()
        """Chunks (or streamed plans) per preprocess replica."""

    async def stream(self) -> AsyncGenerator[AudioPart]:
        """The parts in order. One replica's streamed plan answers first with the probe, and goes
        on to plan the file itself unless the file is to be cut across replicas."""
        async with aclosing(self._one_replica()) as parts:
            async for part in parts:
                yield part
        if self.probe is not None and self.probe.chunked(self.settings):
            async with aclosing(self._chunked(self.probe)) as parts:
                async for part in parts:
                    yield part

    async def _one_replica(self) -> AsyncGenerator[AudioPart]:
        received, waited, died = 0, 0.0, False
        while True:
            stream = self.preprocess.options(stream=True).plan.remote(self.upload, self.vad)
            self.responses.append(stream)
            counted = False
            try:
                async for answer in stream:
                    if isinstance(answer, Busy) and waited < BUSY_RETRY_S:
                        break  # refused before it started: ask again after a pause
                    answer = _accepted(answer)
                    if isinstance(answer, AudioProbe):
                        self.probe = answer
                        if answer.chunked(self.settings):
                            return  # the replica stops here too: the chunks go to every replica
                        continue
                    part: AudioPart = answer
                    if part.replica_id and not counted:
                        self.replicas[part.replica_id] += 1
                        counted = True
                    fresh = [i for i, w in enumerate(part.windows) if w.index >= received]
                    if part.windows and not fresh and not part.last:
                        continue  # sent before the replica died: these windows were received
                    part = _tail(part, fresh[0] if fresh else len(part.windows))
                    received += len(part.windows)
                    yield part
                    if part.last:
                        return
                else:
                    raise RuntimeError("the preprocessing stream ended before its last part")
            except RayActorError:
                if died:
                    raise
                died = True
                log.warning("the replica planning an upload died; planning it again")
                continue
            await asyncio.sleep(BUSY_PAUSE_S)
            waited += BUSY_PAUSE_S

    async def _chunked(self, probe: AudioProbe) -> AsyncGenerator[AudioPart]:
        s = self.settings
        assert probe.duration_s is not None
        chunks = plan_chunks(round(probe.duration_s * SAMPLE_RATE), SAMPLE_RATE, s.chunk_s, s.chunk_overlap_s)
        stitcher = WindowStitcher(SAMPLE_RATE, s.window_s, s.vad_max_gap_s)
        scans: dict[asyncio.Future, Chunk] = {}
        cuts: deque[asyncio.Future] = deque()
        upcoming = iter(chunks)
        try:
            while True:
                # The first chunk is scanned alone, on a core of its own, until its windows go to
                # ASR: the file's first segment waits on it, the document on all of them.
                in_flight = s.chunks_in_flight if stitcher.planned_to else 1
                while not stitcher.done and len(scans) < in_flight and (chunk := next(upcoming, None)):
                    scans[asyncio.ensure_future(self._scan(chunk))] = chunk
                while cuts and cuts[0].done():
                    yield cuts.popleft().result()
                if stitcher.done and not cuts:
                    return
                waiting = set(scans) | ({cuts[0]} if cuts else set())
                if not waiting:
                    raise RuntimeError(f"all {len(chunks)} chunks were scanned and the audio never ended")
                finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in finished & set(scans):
                    del scans[task]
                    windows = stitcher.add(task.result())
                    if windows or stitcher.done:
                        cuts.append(
                            asyncio.ensure_future(self._cut(windows, stitcher.planned_to, stitcher.done))
                        )
        finally:
            for task in [*scans, *cuts]:
                task.cancel()

    async def _scan(self, chunk: Chunk) -> ChunkSpeech:
        scanned: ScannedChunk = await self._answer(
            lambda: self.preprocess.scan.remote(self.upload, chunk, self.vad), f"chunk {chunk.index}"
        )
        if scanned.replica_id:
            self.replicas[scanned.replica_id] += 1
        return scanned.speech

    async def _cut(self, windows: list[Window], planned_to: int, last: bool) -> AudioPart:
        if not windows:
            return AudioPart(windows=[], samples=[], planned_to_s=planned_to / SAMPLE_RATE, last=last)
        return await self._answer(
            lambda: self.preprocess.cut.remote(self.upload, windows, planned_to / SAMPLE_RATE, last),
            f"windows {windows[0].index}-{windows[-1].index}",
        )

    async def _answer(self, call: Callable[[], Any], what: str) -> Any:
        """The call's answer: sent once more if its replica died, and again while the stage is
        at its decoded-audio budget (for up to ``BUSY_RETRY_S``)."""
        waited = 0.0
        while True:
            answer = await once_more_if_replica_died(call, what, self.responses)
            if not isinstance(answer, Busy) or waited >= BUSY_RETRY_S:
                return _accepted(answer)
            await asyncio.sleep(BUSY_PAUSE_S)
            waited += BUSY_PAUSE_S

    def cancel(self) -> None:
        """Stop the calls still running (the request ended early)."""
        for response in self.responses:
            with suppress(Exception):
                response.cancel()


@dataclass
class PlannedAudio:
    """An upload being cut into windows: its parts (the first already in hand, so that a file the
    decoder refuses is refused before a streamed answer starts), and when its preprocessing
    started, planned its first windows and finished (``perf_counter``)."""

    parts: AudioParts
    first: AudioPart
    rest: AsyncGenerator[AudioPart]
    started: float
    first_planned: float
    preprocessed: float | None = None
    duration_s: float = 0.0
    """The audio's length: declared until the last part, then as decoded."""

    async def all_parts(self) -> AsyncGenerator[AudioPart]:
        yield self.first
        if not self.first.last:
            async with aclosing(self.rest) as rest:
                async for part in rest:
                    yield part


class PlanProgress:
    """The progress events of one request: windows planned, and windows transcribed."""

    def __init__(self, audio: PlannedAudio):
        self.audio = audio
        self.windows_total = self.windows_done = 0
        self.seconds_total = self.seconds_done = 0.0
        self.planned_s = 0.0
        self.planning_done = False

    def planned(self, part: AudioPart) -> WindowProgress:
        self.windows_total += len(part.windows)
        self.seconds_total += sum(w.duration_s for w in part.windows)
        self.planned_s, self.planning_done = part.planned_to_s, part.last
        return self._event()

    def transcribed(self, window: Window) -> WindowProgress:
        self.windows_done += 1
        self.seconds_done += window.duration_s
        return self._event()

    def _event(self) -> WindowProgress:
        return WindowProgress(
            windows_done=self.windows_done,
            windows_total=self.windows_total,
            audio_seconds_done=round(self.seconds_done, 3),
            audio_seconds_total=round(self.seconds_total, 3),
            audio_planned_s=round(self.planned_s, 3),
            duration_s=round(self.audio.duration_s, 3),
            planning_done=self.planning_done,
        )


_BUSY_MESSAGE = "The preprocessing stage is decoding as much audio as it may hold. Retry after a short wait."


def _accepted(answer: Any) -> Any:
    """The stage's answer, or its refusal raised as the API's error."""
    if isinstance(answer, Rejected):
        raise answer.error
    if isinstance(answer, Busy):
        raise Overloaded(_BUSY_MESSAGE)
    return answer


def _tail(part: AudioPart, first: int) -> AudioPart:
    """``part`` without its first ``first`` windows."""
    if first == 0:
        return part
    return AudioPart(
        windows=part.windows[first:],
        samples=part.samples[first:],
        planned_to_s=part.planned_to_s,
        replica_id=part.replica_id,
        node_id=part.node_id,
        last=part.last,
    )
