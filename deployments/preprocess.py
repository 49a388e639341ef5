"""Preprocessing stage: decode the upload, cut windows, put each window in the object store.

The upload arrives as an :class:`Upload` and the stage answers with an :class:`AudioPlan` of
window refs, or a :class:`Rejected` naming what is wrong with the file (see
``deployments.audio_plan`` for why the messages look as they do).
"""

from __future__ import annotations

import asyncio
import logging

import av
import numpy as np
import ray
from ray import serve

from deployments.audio_plan import AudioPlan, Rejected, Upload
from deployments.metrics import PreprocessMetrics
from deployments.stage import StageReplica
from pipeline.audio import SAMPLE_RATE, decode_audio
from pipeline.errors import AudioError
from pipeline.schemas import ModelInfo
from pipeline.settings import AudioSettings
from pipeline.vad import WindowPlanner

log = logging.getLogger("ray.serve")


@serve.deployment(name="preprocess")
class PreprocessDeployment(StageReplica):
    def __init__(self, settings: AudioSettings):
        super().__init__("preprocess")
        self.settings = settings
        self.planner = WindowPlanner(settings)
        self.metrics = PreprocessMetrics()

    def probe_model(self) -> None:
        """VAD over half a second of silence: Silero answers (the decoder has no model to wedge)."""
        self.planner.plan(np.zeros(8000, np.float32), SAMPLE_RATE)

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
            node_id=self.placement.node_id,
        )

    def _decode(self, upload: Upload):
        return decode_audio(
            upload.read(), max_duration_s=self.settings.max_duration_s, sample_rate=SAMPLE_RATE
        )

    def loaded_model_info(self) -> ModelInfo:
        return ModelInfo(
            stage="preprocess",
            model=f"pyav-{av.__version__}+{self.planner.method}",
            backend="pyav",
            device="cpu",
            dtype="float32",
            load_s=0.0,
        )
