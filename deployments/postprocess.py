"""Post-processing stage: the LLM that restores punctuation and writes the summary."""

from __future__ import annotations

import asyncio
import threading

from ray import serve

from deployments.health import ModelProbe
from deployments.metrics import PostprocessMetrics
from deployments.placement import assigned_gpu_share
from deployments.stage import StageReplica
from pipeline.llm import ChatBackend, ChatOutput, Conversation, load_chat_backend
from pipeline.postprocess import PostProcessor
from pipeline.schemas import ModelInfo, PostprocessResult, SpeakerText
from pipeline.settings import LlmSettings

PROBE = [{"role": "user", "content": "Say OK."}]


class _OneCallAtATime:
    """The chat backend, one call at a time: neither transformers' generate nor vllm.LLM (the
    offline engine) may be called from several threads at once. The lock is per call, not per
    request, so the health probe queues behind one call at most, never a whole long transcript;
    each call is reported to the probe as real work (see ``ModelProbe.working``)."""

    def __init__(self, backend: ChatBackend, probe: ModelProbe):
        self.backend = backend
        self.probe = probe
        self._lock = threading.Lock()

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        with self.probe.working():
            return self.chat_unrecorded(conversations, max_new_tokens)

    def chat_unrecorded(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        """A call in turn with the others that does not count as real work (the probe's own)."""
        with self._lock:
            return self.backend.chat(conversations, max_new_tokens=max_new_tokens)

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def info(self) -> ModelInfo:
        return self.backend.info()


@serve.deployment(name="postprocess")
class PostprocessDeployment(StageReplica):
    def __init__(self, settings: LlmSettings):
        super().__init__("postprocess")
        self.backend = _OneCallAtATime(
            load_chat_backend(settings, gpu_share=assigned_gpu_share()), self.probe
        )
        self.postprocessor = PostProcessor(settings, self.backend)
        self.metrics = PostprocessMetrics()
        self.metrics.model_load_seconds.set(self.backend.info().load_s)
        self.warm_up()

    def probe_model(self) -> None:
        """One token for a one-line prompt, in turn with real calls but not counted as one."""
        self.backend.chat_unrecorded([PROBE], max_new_tokens=1)

    async def __call__(
        self, text: str, punctuate: bool, summarize: bool, speakers: list[SpeakerText] | None = None
    ) -> PostprocessResult:
        """``speakers``: the transcript's words as speaker turns, when it was diarized (see
        :func:`pipeline.speaker_text.speaker_texts`); the result then keeps the turns."""
        result = await asyncio.to_thread(
            self.postprocessor.run, text, punctuate=punctuate, summarize=summarize, speakers=speakers
        )
        self.metrics.record_result(result)
        return result.model_copy(update={"node_id": self.placement.node_id})

    def loaded_model_info(self) -> ModelInfo:
        return self.backend.info()
