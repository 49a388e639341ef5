"""ASR stage: Whisper replicas; ``@serve.batch`` gathers windows across requests and files."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np
from ray import serve

from deployments.app_args import AsrBatching
from deployments.metrics import AsrMetrics
from deployments.placement import assigned_gpu_share
from deployments.stage import StageReplica
from pipeline.decoding import DecodeOptions
from pipeline.schemas import ModelInfo, WindowTranscript
from pipeline.settings import AsrSettings
from pipeline.whisper import WhisperTranscriber, WindowAudio
from pipeline.windows import Window


@dataclass
class WindowRequest:
    """One window waiting for a batch: its samples, where it sits, and how to decode it."""

    audio: np.ndarray
    window: Window
    language: str | None
    options: DecodeOptions


def generate_calls(requests: Sequence[WindowRequest]) -> list[list[tuple[int, WindowRequest]]]:
    """The requests of one batch (with their positions in it), grouped into ``generate`` calls:
    windows decoded with the same options (task, temperature, prompt, word timestamps, logprobs,
    adapter) share a call; languages may differ within one. A LoRA adapter is the model's state
    for a whole call, so windows of different adapters never share one."""
    indexed = sorted(enumerate(requests), key=lambda item: repr(item[1].options))
    return [list(group) for _, group in groupby(indexed, key=lambda item: item[1].options)]


@serve.deployment(name="asr")
class AsrDeployment(StageReplica):
    def __init__(self, settings: AsrSettings):
        super().__init__("asr")
        self.transcriber = WhisperTranscriber(settings, gpu_share=assigned_gpu_share())
        self.windows_transcribed = 0
        self.metrics = AsrMetrics()
        self.metrics.model_load_seconds.set(self.transcriber.load_s)
        self.warm_up()

    def probe_model(self) -> None:
        """A second of faint noise through language detection and generate: a real window's path."""
        noise = np.random.default_rng(0).normal(0, 0.003, 16000).astype(np.float32)
        self.transcriber.transcribe([WindowAudio(noise, 0.0)], language=None)

    def reconfigure(self, user_config: dict) -> None:
        batching = AsrBatching.model_validate(user_config or {})
        # @serve.batch adds these setters at runtime; its stub returns the plain coroutine function.
        self._transcribe_batch.set_max_batch_size(batching.max_batch_size)  # type: ignore[attr-defined]
        self._transcribe_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)  # type: ignore[attr-defined]

    async def detect_language(self, audio: np.ndarray, adapter: str | None = None) -> str:
        return await asyncio.to_thread(self.transcriber.detect_language, audio, adapter)

    async def transcribe(
        self, audio: np.ndarray, window: Window, language: str | None, options: DecodeOptions
    ) -> WindowTranscript:
        """Transcribe one window (``audio`` arrives resolved from the object store)."""
        transcript = await self._transcribe_batch(WindowRequest(audio, window, language, options))
        return transcript.model_copy(
            update={"replica_id": self.placement.replica_id, "node_id": self.placement.node_id}
        )

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def _transcribe_batch(self, requests: list[WindowRequest]) -> list[WindowTranscript]:
        results: dict[int, WindowTranscript] = {}
        for group in generate_calls(requests):
            windows = [WindowAudio(r.audio, r.window.start_s, r.window.index) for _, r in group]
            out = await asyncio.to_thread(
                self.transcriber.transcribe,
                windows,
                language=[r.language for _, r in group],
                options=group[0][1].options,
            )
            results.update(
                {
                    i: transcript.model_copy(update={"batch_size": len(group)})
                    for (i, _), transcript in zip(group, out, strict=True)
                }
            )
            self.windows_transcribed += len(group)
            self.metrics.record_batch([r.window.duration_s for _, r in group])
            self.probe.answered()
        return [results[i] for i in range(len(requests))]

    def loaded_model_info(self) -> ModelInfo:
        return self.transcriber.info().model_copy(update={"windows_transcribed": self.windows_transcribed})
