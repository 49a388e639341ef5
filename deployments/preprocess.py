"""Preprocessing stage: decode the upload, cut windows, put each window in the object store.

It returns a small :class:`AudioPlan` holding ``ObjectRef``s, so the driver routes windows to ASR
replicas without ever holding the samples itself.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import av
import ray
from ray import serve

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
class AudioPlan:
    """Decoded audio as refs: one ``ObjectRef`` (float32 samples) per window."""

    duration_s: float
    sample_rate: int
    windows: list[Window]
    refs: list[ray.ObjectRef]


@serve.deployment(name="preprocess")
class PreprocessDeployment:
    def __init__(self, settings: AudioSettings):
        self.settings = settings
        self.planner = WindowPlanner(settings)

    async def __call__(self, data: bytes) -> AudioPlan | Rejected:
        try:
            audio = await asyncio.to_thread(decode_audio, data, max_duration_s=self.settings.max_duration_s,
                                            sample_rate=SAMPLE_RATE)
        except AudioError as exc:
            log.info("rejected upload (%d bytes): %s", len(data), exc.code)
            return Rejected(exc)
        windows = await asyncio.to_thread(self.planner.plan, audio, SAMPLE_RATE)
        refs = [ray.put(w.cut(audio)) for w in windows]
        return AudioPlan(duration_s=audio.size / SAMPLE_RATE, sample_rate=SAMPLE_RATE,
                         windows=windows, refs=refs)

    def model_info(self) -> ModelInfo:
        return ModelInfo(stage="preprocess", model=f"pyav-{av.__version__}+{self.planner.method}",
                         backend="pyav", device="cpu", dtype="float32", load_s=0.0,
                         **replica_placement())
