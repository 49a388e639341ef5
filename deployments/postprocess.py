"""Post-processing stage: the LLM that restores punctuation, writes the summary and translates."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractContextManager, nullcontext

from ray import serve

from deployments.health import ModelProbe
from deployments.metrics import PostprocessMetrics
from deployments.placement import assigned_gpu_share
from deployments.stage import StageReplica
from pipeline.llm import ChatBackend, ChatOutput, Conversation, load_chat_backend
from pipeline.llm_results import PostprocessResult, SpeakerText, TranslationBatch, TranslationSource
from pipeline.postprocess import PostProcessor
from pipeline.schemas import ModelInfo
from pipeline.settings import LlmSettings
from pipeline.translation import Translator

PROBE = [{"role": "user", "content": "Say OK."}]


class _ChatCalls:
    """The chat backend as the deployment calls it: from several threads at once (each request's
    postprocessor runs in ``asyncio.to_thread``). A backend that cannot take concurrent calls
    (transformers' generate) gets them one at a time; the lock is per call, not per request, so
    the health probe queues behind one call at most, never a whole long transcript. A backend
    that can (vLLM's async engine) gets them all at once, to batch their requests. Each call is
    reported to the probe as real work (see ``ModelProbe.working``)."""

    concurrent_calls = True  # it takes the turns its backend needs itself

    def __init__(self, backend: ChatBackend, probe: ModelProbe):
        self.backend = backend
        self.probe = probe
        self._turn: AbstractContextManager[object] = (
            nullcontext() if backend.concurrent_calls else threading.Lock()
        )

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        with self.probe.working():
            return self.chat_unrecorded(conversations, max_new_tokens)

    def chat_unrecorded(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        """A call (in turn with the others, where the backend needs it) that does not count as
        real work (the probe's own)."""
        with self._turn:
            return self.backend.chat(conversations, max_new_tokens=max_new_tokens)

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def info(self) -> ModelInfo:
        return self.backend.info()

    def close(self) -> None:
        self.backend.close()


@serve.deployment(name="postprocess")
class PostprocessDeployment(StageReplica):
    def __init__(self, settings: LlmSettings):
        super().__init__("postprocess")
        self.backend = _ChatCalls(load_chat_backend(settings, gpu_share=assigned_gpu_share()), self.probe)
        self.postprocessor = PostProcessor(settings, self.backend)
        self.translator = Translator(settings, self.backend)
        self.metrics = PostprocessMetrics()
        self.metrics.model_load_seconds.set(self.backend.info().load_s)
        self.warm_up()

    def probe_model(self) -> None:
        """One token for a one-line prompt, not counted as a real call (and in turn with them,
        for a backend that takes calls one at a time)."""
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

    async def translate(
        self, segments: list[TranslationSource], language: str, context: list[str]
    ) -> TranslationBatch:
        """``segments`` translated into ``language`` (a code), one answer per segment, in order;
        ``context``: the source text of the segments just before them."""
        batch = await asyncio.to_thread(self.translator.translate, segments, language, context)
        self.metrics.record_tokens(batch.tokens_in, batch.tokens_out)
        return batch

    def __del__(self) -> None:
        """Serve calls this as the replica shuts down: vLLM's engine process goes with it."""
        if hasattr(self, "backend"):  # not when loading failed
            self.backend.close()

    def loaded_model_info(self) -> ModelInfo:
        return self.backend.info()
