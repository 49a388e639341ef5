"""Preprocessing stage: decode the upload, cut windows, put each window in the object store.

The upload arrives as :class:`Upload`, the file's bytes in object-store chunks that the driver
wrote as it read them from its spooled temporary file, so the driver never holds the whole file
in its heap (#4). The stage returns a small :class:`AudioPlan` holding ``ObjectRef``s, so the
driver routes windows to ASR replicas without ever holding the samples itself. The windows are
owned by the replica that cut them (Ray 2.56 removed ``ray.put``'s ``_owner``), so they are lost if
it dies before ASR fetched them: the plan carries its upload, and the driver cuts it again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import av
import numpy as np
import ray
from ray import serve

from deployments.health import ModelProbe
from deployments.metrics import PreprocessMetrics
from deployments.placement import replica_placement
from pipeline.audio import SAMPLE_RATE, AudioError, decode_audio
from pipeline.schemas import ModelInfo
from pipeline.settings import AudioSettings
from pipeline.vad import WindowPlanner
from pipeline.windows import Window

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Rejected:
    """The upload is not usable audio. Returned rather than raised: a client's bad file is not a
    replica failure, and must not be logged as one."""

    error: AudioError


@dataclass(frozen=True)
class Upload:
    """An uploaded file as ``ObjectRef``s of consecutive uint8 chunks, in order."""

    chunks: list[ray.ObjectRef]
    size: int

    def read(self) -> bytes:
        """The file's bytes, joined once (the chunks themselves are zero-copy views)."""
        return b"".join(memoryview(chunk) for chunk in ray.get(self.chunks))


@dataclass(frozen=True)
class AudioPlan:
    """Decoded audio as refs: one ``ObjectRef`` (float32 samples) per window."""

    duration_s: float
    sample_rate: int
    windows: list[Window]
    refs: list[ray.ObjectRef]
    upload: Upload
    """What the windows were cut from (the driver's own objects), to cut again if they are lost."""
    node_id: str | None = None
    """The node whose object store holds the windows (the preprocess replica's)."""


@serve.deployment(name="preprocess")
class PreprocessDeployment:
    def __init__(self, settings: AudioSettings):
        self.settings = settings
        self.planner = WindowPlanner(settings)
        self.metrics = PreprocessMetrics()
        self.node_id = replica_placement()["node_id"]
        # VAD over half a second of silence: Silero answers (the decoder has no model to wedge).
        self.probe = ModelProbe(
            "preprocess", lambda: self.planner.plan(np.zeros(8000, np.float32), SAMPLE_RATE)
        )

    async def check_health(self) -> None:
        await self.probe.check()

    async def __call__(self, upload: Upload) -> AudioPlan | Rejected:
        try:
            audio = await asyncio.to_thread(self._decode, upload)
        except AudioError as exc:
            log.info("rejected upload (%d bytes): %s", upload.size, exc.code)
            return Rejected(exc)
        windows = await asyncio.to_thread(self.planner.plan, audio, SAMPLE_RATE)
        refs = [ray.put(w.cut(audio)) for w in windows]
        self.probe.answered()
        self.metrics.record_plan(audio.size / SAMPLE_RATE, sum(w.duration_s for w in windows))
        return AudioPlan(
            duration_s=audio.size / SAMPLE_RATE,
            sample_rate=SAMPLE_RATE,
            windows=windows,
            refs=refs,
            upload=upload,
            node_id=self.node_id,
        )

    def _decode(self, upload: Upload):
        return decode_audio(
            upload.read(), max_duration_s=self.settings.max_duration_s, sample_rate=SAMPLE_RATE
        )

    def model_info(self) -> ModelInfo:
        return ModelInfo(
            stage="preprocess",
            model=f"pyav-{av.__version__}+{self.planner.method}",
            backend="pyav",
            device="cpu",
            dtype="float32",
            load_s=0.0,
            **replica_placement(),
        )
