"""Post-processing stage: the LLM that restores punctuation and writes the summary."""

from __future__ import annotations

import asyncio

from ray import serve

from deployments.metrics import PostprocessMetrics
from deployments.placement import assigned_gpu_share, replica_placement
from pipeline.llm import load_chat_backend
from pipeline.postprocess import PostProcessor
from pipeline.schemas import ModelInfo, PostprocessResult
from pipeline.settings import LlmSettings


@serve.deployment(name="postprocess")
class PostprocessDeployment:
    def __init__(self, settings: LlmSettings):
        backend = load_chat_backend(settings, gpu_share=assigned_gpu_share())
        self.postprocessor = PostProcessor(settings, backend)
        self.metrics = PostprocessMetrics()
        self.metrics.model_load_seconds.set(backend.info().load_s)
        # Neither transformers' generate nor vllm.LLM (the offline engine) may be called from
        # several threads at once: requests take turns on the model.
        self._lock = asyncio.Lock()

    async def __call__(self, text: str, punctuate: bool, summarize: bool) -> PostprocessResult:
        async with self._lock:
            result = await asyncio.to_thread(self.postprocessor.run, text, punctuate=punctuate,
                                             summarize=summarize)
        self.metrics.record_result(result)
        return result

    def model_info(self) -> ModelInfo:
        return self.postprocessor.backend.info().model_copy(update=replica_placement())
