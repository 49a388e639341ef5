"""Preprocessing stage: decode uploads, find their speech, answer with each window's samples.

Three calls, all over the same upload (the driver's object-store chunks):

- ``plan``: a stream that answers first with what the container declares (an
  :class:`AudioProbe`: length, whether it seeks exactly), or :class:`Rejected` when it is not
  usable audio, before anything is decoded; then, unless the file is long and seeks exactly, the
  file's :class:`AudioPart`s, decoded once, front to back, a chunk at a time
  (``pipeline.long_audio.plan_in_chunks``): short files, formats that cannot seek exactly, and
  VAD off. One call per request.
- ``live_speech``: Silero's probabilities for a live session's next frames; the session keeps
  the recurrent state and sends it along, so any replica serves any session's next frames.
- ``scan`` and ``cut``: one chunk of a long, seekable file decoded by seeking and scanned for
  speech; then the windows the driver stitched from the chunks, decoded again. The driver sends
  a file's chunks to several replicas at once.

Every call holds at most about one chunk of decoded audio, and a replica holds at most
``max_decoded_s_in_flight`` seconds over all its calls: past that it answers :class:`Busy`
(the driver's 503 with Retry-After) rather than running out of memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager

import av
import numpy as np
from ray import serve

from deployments.audio_plan import AudioPart, AudioProbe, Busy, Rejected, ScannedChunk, Upload
from deployments.metrics import PreprocessMetrics
from deployments.stage import StageReplica
from pipeline.audio import SAMPLE_RATE
from pipeline.audio_ranges import decode_range, probe_audio
from pipeline.errors import AudioError
from pipeline.long_audio import PlannedWindows, plan_in_chunks, scan_chunk
from pipeline.schemas import ModelInfo
from pipeline.settings import AudioSettings, VadOptions
from pipeline.speech_windows import Chunk
from pipeline.vad import SpeechDetector, VadStream
from pipeline.windows import Window

log = logging.getLogger("ray.serve")


class DecodeBudget:
    """Seconds of decoded audio a replica's calls hold at once. A call larger than the whole
    budget still runs when the replica holds nothing else, so no file is refused forever."""

    def __init__(self, max_s: float):
        self.max_s = max_s
        self.held_s = 0.0

    @contextmanager
    def hold(self, seconds: float) -> Iterator[bool]:
        if self.held_s > 0 and self.held_s + seconds > self.max_s:
            yield False
            return
        self.held_s += seconds
        try:
            yield True
        finally:
            self.held_s -= seconds


@serve.deployment(name="preprocess")
class PreprocessDeployment(StageReplica):
    def __init__(self, settings: AudioSettings):
        super().__init__("preprocess")
        self.settings = settings
        self.speech = SpeechDetector(settings)  # live sessions' VAD, also when files are planned without
        self.detector = self.speech if settings.vad else None
        self.budget = DecodeBudget(settings.max_decoded_s_in_flight)
        self.metrics = PreprocessMetrics()

    def probe_model(self) -> None:
        """VAD over half a second of silence: Silero answers (the decoder has no model to wedge)."""
        if self.detector is not None:
            self.detector.speech_spans(np.zeros(8000, np.float32))

    async def plan(
        self, upload: Upload, vad: VadOptions | None = None
    ) -> AsyncGenerator[AudioProbe | AudioPart | Rejected | Busy]:
        """What the container declares, then (unless the file is to be cut across replicas) the
        file's windows, decoded front to back; one part per chunk that settled windows."""
        s = self.settings
        try:
            info = await asyncio.to_thread(probe_audio, upload.open(), max_duration_s=s.max_duration_s)
        except AudioError as exc:
            log.info("rejected upload (%d bytes): %s", upload.size, exc.code)
            yield Rejected(exc)
            return
        probe = AudioProbe(duration_s=info.duration_s, seekable=info.seekable, channels=info.channels)
        yield probe
        if probe.chunked(s):
            return
        with self.budget.hold(s.chunk_s + 2 * s.chunk_overlap_s) as granted:
            if not granted:
                yield Busy(self.budget.held_s)
                return
            parts = plan_in_chunks(upload.open(), s, self.detector, vad, SAMPLE_RATE)
            planned_to, speech = 0, 0.0
            while True:
                try:
                    planned: PlannedWindows | None = await asyncio.to_thread(next, parts, None)
                except AudioError as exc:
                    log.info("rejected upload (%d bytes): %s", upload.size, exc.code)
                    yield Rejected(exc)
                    return
                if planned is None:
                    return
                speech += sum(w.duration_s for w in planned.windows)
                self.metrics.record_decoded((planned.planned_to - planned_to) / SAMPLE_RATE)
                planned_to = planned.planned_to
                if planned.last:
                    self.metrics.record_file(planned_to / SAMPLE_RATE, speech)
                self.probe.answered()
                yield self._part(planned.windows, planned.samples, planned.planned_to, planned.last)

    async def live_speech(self, audio: np.ndarray, state: VadStream) -> tuple[np.ndarray, VadStream]:
        """Speech probabilities of a live session's next whole frames, and the state after them."""
        return await asyncio.to_thread(self.speech.stream_probabilities, audio, state)

    async def scan(
        self, upload: Upload, chunk: Chunk, vad: VadOptions | None = None
    ) -> ScannedChunk | Rejected | Busy:
        """One chunk's speech, decoded by seeking."""
        assert self.detector is not None, "scan is for VAD on; the driver plans VAD-off files with plan()"
        s = self.settings
        seconds = (
            (chunk.scan_to - chunk.scan_from) / SAMPLE_RATE
            if chunk.scan_to
            else s.chunk_s + 2 * s.chunk_overlap_s
        )
        with self.budget.hold(seconds) as granted:
            if not granted:
                return Busy(self.budget.held_s)
            try:
                found = await asyncio.to_thread(
                    scan_chunk, upload.open(), chunk, self.detector, s, vad, SAMPLE_RATE
                )
            except AudioError as exc:
                log.info("rejected chunk %d of an upload (%d bytes): %s", chunk.index, upload.size, exc.code)
                return Rejected(exc)
        self.probe.answered()
        owned_to = found.scanned_to if chunk.end is None else min(chunk.end, found.scanned_to)
        self.metrics.record_decoded(max(0, owned_to - chunk.start) / SAMPLE_RATE)
        return ScannedChunk(found, self.placement.replica_id)

    async def cut(
        self, upload: Upload, windows: list[Window], planned_to_s: float, last: bool
    ) -> AudioPart | Rejected | Busy:
        """``windows`` (consecutive, planned by the driver) decoded by seeking."""
        start, end = windows[0].start, windows[-1].end
        with self.budget.hold((end - start) / SAMPLE_RATE) as granted:
            if not granted:
                return Busy(self.budget.held_s)
            try:
                audio = await asyncio.to_thread(
                    decode_range,
                    upload.open(),
                    start,
                    end,
                    max_duration_s=self.settings.max_duration_s,
                    sample_rate=SAMPLE_RATE,
                )
            except AudioError as exc:
                return Rejected(exc)
            samples = [audio[w.start - start : w.end - start] for w in windows]
            return self._part(windows, samples, round(planned_to_s * SAMPLE_RATE), last)

    def _part(
        self, windows: list[Window], samples: list[np.ndarray], planned_to: int, last: bool
    ) -> AudioPart:
        return AudioPart(
            windows=windows,
            samples=[np.ascontiguousarray(x) for x in samples],
            planned_to_s=planned_to / SAMPLE_RATE,
            replica_id=self.placement.replica_id,
            node_id=self.placement.node_id,
            last=last,
        )

    def loaded_model_info(self) -> ModelInfo:
        method = "silero-vad-onnx" if self.detector else "fixed-windows"
        return ModelInfo(
            stage="preprocess",
            model=f"pyav-{av.__version__}+{method}",
            backend="pyav",
            device="cpu",
            dtype="float32",
            load_s=0.0,
        )
