"""Chat LLM backends with one interface: ``chat(conversations, max_new_tokens)``.

``TransformersChat`` (a causal LM and its chat template) runs anywhere, CPU included.
``VllmChat`` runs on CUDA with the optional ``vllm`` extra, imported only when chosen. vLLM takes
``gpu_memory_utilization`` of the *whole* GPU regardless of Ray's logical fraction (Ray issue
#62553, vLLM #4242), so it is the replica's ``llm.gpu_memory_fraction``, by default its GPU share
times ``llm.gpu_memory_margin``; the app builder refuses a fraction above the share.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

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
    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]: ...

    def count_tokens(self, text: str) -> int: ...

    def info(self) -> ModelInfo: ...


class TransformersChat:
    """Greedy chat generation with a transformers causal LM."""

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
    """Greedy chat generation with vLLM (CUDA only; ``pip install speechgraph[vllm]``)."""

    def __init__(self, settings: LlmSettings, gpu_share: float | None):
        started = time.perf_counter()
        try:
            import vllm
        except ImportError as exc:
            raise RuntimeError(
                "llm.backend is 'vllm' but vllm is not installed: install the "
                "'vllm' extra on a CUDA machine, or use backend 'transformers'."
            ) from exc
        self.settings = settings
        self._sampling = vllm.SamplingParams
        self.gpu_memory_utilization = vllm_memory_utilization(gpu_share, settings)
        dtype = "auto" if settings.dtype == "auto" else settings.dtype
        self.llm = vllm.LLM(
            model=resolve_model_path(settings.model, "llm"),
            dtype=dtype,
            gpu_memory_utilization=self.gpu_memory_utilization,
            **settings.vllm_options,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.load_s = time.perf_counter() - started

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[ChatOutput]:
        params = self._sampling(temperature=0.0, max_tokens=max_new_tokens)
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        return [
            ChatOutput(
                text=o.outputs[0].text,
                tokens_in=len(o.prompt_token_ids),
                tokens_out=len(o.outputs[0].token_ids),
            )
            for o in outputs
        ]

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
