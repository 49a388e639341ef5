"""Chat LLM backends with one interface: ``chat(conversations, max_new_tokens)``.

``TransformersChat`` (a causal LM and its chat template) runs anywhere, CPU included; its
``generate`` takes one call at a time, so the postprocess deployment gives it calls in turn.
``VllmChat`` runs on CUDA with the optional ``vllm`` extra, imported only when chosen. It drives
vLLM's async engine rather than the offline ``vllm.LLM``, which also takes one call at a time:
calls from all of a replica's requests are in flight in the engine at once and vLLM batches them
continuously (a request joins the running batch between decoding steps), so the postprocess
deployment's ``max_ongoing_requests`` is how many requests share the GPU, not a queue in front
of a lock. vLLM takes ``gpu_memory_utilization`` of the *whole* GPU regardless of Ray's logical
fraction (Ray issue #62553, vLLM #4242), so it is the replica's ``llm.gpu_memory_fraction``, by
default its GPU share times ``llm.gpu_memory_margin``; the app builder refuses a fraction above
the share.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BatchEncoding

from pipeline.devices import (
    cap_cuda_memory,
    dtype_name,
    memory_in_use_bytes,
    resolve_device,
    resolve_dtype,
)
from pipeline.schemas import ModelInfo
from pipeline.settings import LlmSettings, memory_fraction
from pipeline.tiny_models import resolve_model_path

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class ChatOutput:
    text: str
    tokens_in: int
    tokens_out: int


class ChatBackend(Protocol):
    concurrent_calls: bool
    """Whether ``chat`` may be called from several threads at once; when not, callers take turns."""

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]: ...

    def count_tokens(self, text: str) -> int: ...

    def info(self) -> ModelInfo: ...

    def close(self) -> None:
        """Release what outlives the backend object (an engine process), as its replica ends."""


class TransformersChat:
    """Greedy chat generation with a transformers causal LM."""

    concurrent_calls = False  # one model, one generate at a time

    def __init__(self, settings: LlmSettings, gpu_share: float | None = None):
        started = time.perf_counter()
        self.settings = settings
        path = resolve_model_path(settings.model, "llm")
        self.device = resolve_device(settings.device)
        self.gpu_memory_fraction = cap_cuda_memory(
            self.device, memory_fraction(gpu_share, settings.gpu_memory_fraction)
        )
        self.dtype = resolve_dtype(settings.dtype, self.device, torch.bfloat16)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        self.model.to(self.device).eval()  # type: ignore[arg-type]  # `to` is @wraps-decorated: mypy sees it unbound
        self.load_s = time.perf_counter() - started
        log.info(
            "loaded llm %s on %s/%s in %.2fs",
            settings.model,
            self.device,
            dtype_name(self.dtype),
            self.load_s,
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        encoded = self.tokenizer.apply_chat_template(
            conversations, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
        )
        assert isinstance(encoded, BatchEncoding), "return_dict=True gives a BatchEncoding"
        batch = encoded.to(self.device)
        prompt_len = batch["input_ids"].shape[1]
        out = self.model.generate(  # type: ignore[misc]  # generate's self type is a protocol mypy cannot match
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
        )
        results = []
        for row, mask in zip(out, batch["attention_mask"], strict=True):
            generated = row[prompt_len:]
            generated = generated[generated != self.tokenizer.pad_token_id]
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            assert isinstance(text, str), "one sequence decodes to one string"
            results.append(
                ChatOutput(
                    text=text,
                    tokens_in=int(mask.sum()),
                    tokens_out=int(generated.numel()),
                )
            )
        return results

    def close(self) -> None:
        """Nothing to stop: the model lives in this process and goes with it."""

    def info(self) -> ModelInfo:
        return ModelInfo(
            stage="postprocess",
            model=self.settings.model,
            backend="transformers",
            device=self.device.type,
            dtype=dtype_name(self.dtype),
            load_s=self.load_s,
            memory_bytes=memory_in_use_bytes(self.device),
            gpu_memory_fraction=self.gpu_memory_fraction,
        )


def vllm_memory_utilization(gpu_share: float | None, settings: LlmSettings) -> float:
    """``gpu_memory_utilization`` for a replica that Ray gave ``gpu_share`` of one GPU."""
    if not gpu_share or gpu_share <= 0:
        raise ValueError(
            "The vllm backend needs a GPU: give the postprocess deployment "
            "ray_actor_options.num_gpus > 0, or use backend 'transformers'."
        )
    fraction = memory_fraction(gpu_share, settings.gpu_memory_fraction, settings.gpu_memory_margin)
    assert fraction is not None, "a replica with a GPU share always has a memory fraction"
    return fraction


class VllmChat:
    """Greedy chat generation with vLLM's async engine (CUDA only; ``pip install speechgraph[vllm]``).

    The engine lives on an event loop of its own, in a daemon thread: its output handler is bound
    to the loop it starts on, and ``chat`` is called from worker threads that have none. Each call
    submits one engine request per conversation and blocks until all are finished; calls from
    several threads are in the engine together.
    """

    concurrent_calls = True

    def __init__(self, settings: LlmSettings, gpu_share: float | None):
        started = time.perf_counter()
        try:
            import vllm
            from vllm.sampling_params import RequestOutputKind
        except ImportError as exc:
            raise RuntimeError(
                "llm.backend is 'vllm' but vllm is not installed: install the "
                "'vllm' extra on a CUDA machine, or use backend 'transformers'."
            ) from exc
        self.settings = settings
        self._vllm = vllm
        self._final_only = RequestOutputKind.FINAL_ONLY  # no partial outputs to build and skip
        self.gpu_memory_utilization = vllm_memory_utilization(gpu_share, settings)
        args = vllm.AsyncEngineArgs(
            model=resolve_model_path(settings.model, "llm"),
            dtype=settings.dtype,
            gpu_memory_utilization=self.gpu_memory_utilization,
            **settings.vllm_options,
        )
        self._loop = asyncio.new_event_loop()
        self._calls: set[asyncio.Task] = set()  # chat calls in the engine; used on the loop only
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine", daemon=True)
        self._loop_thread.start()
        try:
            self.engine = self._on_loop(self._start_engine(args))
        except BaseException:
            self._stop_loop()
            raise
        # The engine's own tokenizer, so prompts are the token ids it would make. The attribute, not
        # ``get_tokenizer()``: that is a coroutine in vLLM 0.11 and a plain method in later releases.
        self.tokenizer = self.engine.tokenizer
        self.load_s = time.perf_counter() - started

    async def _start_engine(self, args: Any) -> Any:
        return self._vllm.AsyncLLMEngine.from_engine_args(args)

    def _on_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _prompt_ids(self, conversation: Conversation) -> list[int]:
        """The conversation in the model's chat template, ready for the answer, as token ids (as
        ``vllm.LLM.chat`` does it: the template already has the special tokens)."""
        text = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        params = self._vllm.SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, output_kind=self._final_only
        )
        prompts = [self._prompt_ids(c) for c in conversations]
        call = asyncio.run_coroutine_threadsafe(self._generate_all(prompts, params), self._loop)
        try:
            return call.result()
        except BaseException:
            call.cancel()  # interrupted while waiting: the call aborts its requests
            raise

    async def _generate_all(self, prompts: list[list[int]], params: Any) -> list[ChatOutput]:
        """All of one call's requests, in the order given. When one fails or the call is cancelled,
        the others are aborted in the engine, so none keeps generating for nobody."""
        call = asyncio.current_task()
        assert call is not None, "run as a task by run_coroutine_threadsafe"
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        request_ids = [uuid.uuid4().hex for _ in prompts]
        requests = [
            asyncio.create_task(self._generate(prompt, params, request_id))
            for prompt, request_id in zip(prompts, request_ids, strict=True)
        ]
        try:
            return list(await asyncio.gather(*requests))
        except BaseException:
            for task in requests:
                task.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
            # A cancelled ``generate`` aborts its own request, but not one cancelled while it is
            # still being added; aborting by id covers both (vLLM ignores ids it no longer has).
            cancelled = [rid for rid, task in zip(request_ids, requests, strict=True) if task.cancelled()]
            if cancelled:
                await self.engine.abort(cancelled)
            raise

    async def _generate(self, prompt: list[int], params: Any, request_id: str) -> ChatOutput:
        final = None
        async for output in self.engine.generate(
            self._vllm.TokensPrompt(prompt_token_ids=prompt), params, request_id
        ):
            final = output
        assert final is not None and final.finished, "the engine's last output is the finished one"
        completion = final.outputs[0]
        return ChatOutput(text=completion.text, tokens_in=len(prompt), tokens_out=len(completion.token_ids))

    def close(self) -> None:
        """Stops the engine (its process) and its loop thread, for a replica going away. Calls in
        flight are cancelled (they raise, their requests aborted); later calls raise."""
        if self._loop.is_closed():
            return
        self._on_loop(self._shutdown())
        self._stop_loop()

    async def _shutdown(self) -> None:
        calls = list(self._calls)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        self.engine.shutdown()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()

    def info(self) -> ModelInfo:
        return ModelInfo(
            stage="postprocess",
            model=self.settings.model,
            backend="vllm",
            device="cuda",
            dtype=self.settings.dtype,
            load_s=self.load_s,
            memory_bytes=None,  # vLLM allocates in its engine process
            gpu_memory_fraction=self.gpu_memory_utilization,
        )


def load_chat_backend(settings: LlmSettings, gpu_share: float | None = None) -> ChatBackend:
    if settings.backend == "vllm":
        return VllmChat(settings, gpu_share)
    return TransformersChat(settings, gpu_share)
