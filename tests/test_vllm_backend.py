"""The vLLM backend. vLLM is CUDA-only and cannot be installed here, so these tests put a stand-in
``vllm`` module in ``sys.modules`` and check what the backend asks of it."""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import pytest

from pipeline.llm import VllmChat, load_chat_backend, vllm_memory_utilization
from pipeline.settings import LlmSettings


class _FakeLLM:
    instances: ClassVar[list] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        _FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return types.SimpleNamespace(encode=lambda text, add_special_tokens=False: text.split())

    def chat(self, conversations, params, use_tqdm=False):
        self.last = (conversations, params)
        out = types.SimpleNamespace(text="ok", token_ids=[1, 2])
        return [types.SimpleNamespace(outputs=[out], prompt_token_ids=[1, 2, 3]) for _ in conversations]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = _FakeLLM
    module.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", module)
    _FakeLLM.instances.clear()
    return module


def test_memory_utilization_follows_the_gpu_share():
    margin = LlmSettings(gpu_memory_margin=0.9)
    assert vllm_memory_utilization(0.5, margin) == 0.45
    assert vllm_memory_utilization(1.0, margin) == 0.9
    assert vllm_memory_utilization(2.0, margin) == 0.9, "a fraction of each of its GPUs"
    assert vllm_memory_utilization(0.5, LlmSettings(gpu_memory_fraction=0.4)) == 0.4
    with pytest.raises(ValueError, match="num_gpus"):
        vllm_memory_utilization(0.0, margin)


def test_gpu_memory_utilization_is_set_as_the_gpu_memory_fraction():
    with pytest.raises(ValueError, match=r"llm\.gpu_memory_fraction instead"):
        LlmSettings(backend="vllm", vllm_options={"gpu_memory_utilization": 0.9})


def test_vllm_backend_is_built_from_the_replica_share(fake_vllm):
    settings = LlmSettings(
        backend="vllm", model="Qwen/Qwen2.5-7B-Instruct", vllm_options={"max_model_len": 4096}
    )
    backend = load_chat_backend(settings, gpu_share=0.5)
    assert isinstance(backend, VllmChat)
    kwargs = _FakeLLM.instances[0].kwargs
    assert kwargs["gpu_memory_utilization"] == 0.45 and kwargs["max_model_len"] == 4096
    assert kwargs["model"] == "Qwen/Qwen2.5-7B-Instruct"
    out = backend.chat([[{"role": "user", "content": "hi"}]], max_new_tokens=7)
    assert out[0].text == "ok" and out[0].tokens_in == 3 and out[0].tokens_out == 2
    assert _FakeLLM.instances[0].last[1] == {"temperature": 0.0, "max_tokens": 7}
    assert backend.count_tokens("a b c") == 3


def test_vllm_backend_without_a_gpu_share_is_refused(fake_vllm):
    with pytest.raises(ValueError, match="needs a GPU"):
        load_chat_backend(LlmSettings(backend="vllm"), gpu_share=None)


def test_missing_vllm_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(RuntimeError, match="'vllm' extra"):
        load_chat_backend(LlmSettings(backend="vllm"), gpu_share=0.5)
