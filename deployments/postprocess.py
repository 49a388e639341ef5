"""Post-processing stage: the LLM that restores punctuation and writes the summary."""

from __future__ import annotations

import asyncio
import threading
import time

from ray import serve

from deployments.health import ModelProbe
from deployments.metrics import PostprocessMetrics
from deployments.placement import assigned_gpu_share, replica_placement
from pipeline.llm import ChatBackend, ChatOutput, Conversation, load_chat_backend
from pipeline.postprocess import PostProcessor
from pipeline.schemas import ModelInfo, PostprocessResult
from pipeline.settings import LlmSettings

PROBE = [{"role": "user", "content": "Say OK."}]


class _OneCallAtATime:
    """The chat backend, one call at a time: neither transformers' generate nor vllm.LLM (the
    offline engine) may be called from several threads at once. The lock is per call, not per
    request, so the health probe waits for one call at most, never for a whole long transcript;
    each call that returns tells the probe the model answers."""

    def __init__(self, backend: ChatBackend, on_answer):
        self.backend = backend
        self.on_answer = on_answer
        self._lock = threading.Lock()

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        with self._lock:
            out = self.backend.chat(conversations, max_new_tokens=max_new_tokens)
        self.on_answer()
        return out

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def info(self) -> ModelInfo:
        return self.backend.info()


@serve.deployment(name="postprocess")
class PostprocessDeployment:
    def __init__(self, settings: LlmSettings):
        self.probe = ModelProbe("postprocess", lambda: self.backend.chat([PROBE], max_new_tokens=1))
        self.backend = _OneCallAtATime(load_chat_backend(settings, gpu_share=assigned_gpu_share()),
                                       on_answer=self.probe.answered)
        self.postprocessor = PostProcessor(settings, self.backend)
        self.metrics = PostprocessMetrics()
        self.metrics.model_load_seconds.set(self.backend.info().load_s)
        started = time.perf_counter()
        self.backend.chat([PROBE], max_new_tokens=1)  # warm-up: the first request pays no first-call cost
        self.warmup_s = time.perf_counter() - started

    async def __call__(self, text: str, punctuate: bool, summarize: bool) -> PostprocessResult:
        result = await asyncio.to_thread(self.postprocessor.run, text, punctuate=punctuate, summarize=summarize)
        self.metrics.record_result(result)
        return result

    async def check_health(self) -> None:
        await self.probe.check()

    def model_info(self) -> ModelInfo:
        return self.backend.info().model_copy(update={**replica_placement(), "warmup_s": self.warmup_s})
