"""The vLLM backend and the deployment's wrapper around chat backends.

vLLM is CUDA-only and cannot be installed here, so these tests put a stand-in ``vllm`` module in
``sys.modules`` with the part of the async engine's interface the backend uses (``AsyncEngineArgs``,
``AsyncLLMEngine.from_engine_args``, an async ``generate`` that yields a partial then a finished
output, ``abort``, ``tokenizer``, ``shutdown``), and check what the backend asks of it: that calls
from several threads are in the engine together, that outputs come back to their conversations,
and that a failed or cancelled call leaves no request behind in the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import ClassVar

import pytest

from deployments.health import ModelProbe
from deployments.postprocess import _ChatCalls
from pipeline.llm import ChatOutput, VllmChat, load_chat_backend, vllm_memory_utilization
from pipeline.settings import LlmSettings

HOLD_S = 2.0  # the most a fake request waits for the others it expects in flight


class _FakeTokenizer:
    """One id per word; renders a conversation as ``<role> content ... <assistant>``."""

    def __init__(self) -> None:
        self.words: list[str] = []

    def apply_chat_template(self, conversation, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return " ".join(f"<{m['role']}> {m['content']}" for m in conversation) + " <assistant>"

    def encode(self, text, add_special_tokens):
        assert add_special_tokens is False, "the chat template has the special tokens"
        ids = []
        for word in text.split():
            if word not in self.words:
                self.words.append(word)
            ids.append(self.words.index(word))
        return ids

    def decode(self, ids):
        return [self.words[i] for i in ids]


class _FakeEngine:
    """Answers with the prompt's words, at most ``max_tokens`` of them. A request waits until
    ``hold_until`` requests have been in flight at once (or ``HOLD_S``); one whose prompt has the
    word ``boom`` then fails, one with ``stall`` never finishes."""

    instances: ClassVar[list[_FakeEngine]] = []

    def __init__(self, args: object) -> None:
        self.args = args
        self.loop = asyncio.get_running_loop()  # raises unless created on a running loop
        self.tokenizer = _FakeTokenizer()
        self.hold_until = 0
        self.prompts: dict[str, list[str]] = {}  # request id -> prompt words
        self.params: list = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.aborted: list[str] = []
        self.shut_down = False
        self._changed = asyncio.Condition()
        _FakeEngine.instances.append(self)

    @classmethod
    def from_engine_args(cls, args):
        return cls(args)

    async def generate(self, prompt, sampling_params, request_id):
        words = self.tokenizer.decode(prompt["prompt_token_ids"])
        self.prompts[request_id] = words
        self.params.append(sampling_params)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            async with self._changed:
                self._changed.notify_all()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HOLD_S):
                        await self._changed.wait_for(lambda: self.max_in_flight >= self.hold_until)
            if "boom" in words:
                raise RuntimeError("engine failed")
            if "stall" in words:
                await asyncio.Event().wait()
            answer = words[: sampling_params.max_tokens]
            yield _output(request_id, prompt, answer[:1], finished=False)
            yield _output(request_id, prompt, answer, finished=True)
        finally:
            self.in_flight -= 1

    async def abort(self, request_ids):
        self.aborted += request_ids

    def shutdown(self):
        self.shut_down = True


def _output(request_id, prompt, words, finished):
    completion = types.SimpleNamespace(text=" ".join(words), token_ids=list(range(len(words))))
    return types.SimpleNamespace(
        request_id=request_id,
        prompt_token_ids=prompt["prompt_token_ids"],
        outputs=[completion],
        finished=finished,
    )


class _RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.AsyncEngineArgs = types.SimpleNamespace
    module.AsyncLLMEngine = _FakeEngine
    module.SamplingParams = types.SimpleNamespace
    module.TokensPrompt = dict
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = _RequestOutputKind
    module.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    _FakeEngine.instances.clear()
    return module


@pytest.fixture
def vllm_chat(fake_vllm: types.ModuleType) -> Iterator[Callable[..., VllmChat]]:
    backends: list[VllmChat] = []

    def make(settings=None, gpu_share=0.5):
        backend = load_chat_backend(settings or LlmSettings(backend="vllm"), gpu_share=gpu_share)
        assert isinstance(backend, VllmChat)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()


def _user(text):
    return [{"role": "user", "content": text}]


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


def test_the_engine_is_built_from_the_settings_on_the_backends_own_loop(vllm_chat):
    settings = LlmSettings(
        backend="vllm",
        model="Qwen/Qwen2.5-7B-Instruct",
        dtype="bfloat16",
        vllm_options={"max_model_len": 4096, "enforce_eager": True},
    )
    backend = vllm_chat(settings, gpu_share=0.5)
    engine = _FakeEngine.instances[0]
    assert vars(engine.args) == {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "dtype": "bfloat16",
        "gpu_memory_utilization": 0.45,
        "max_model_len": 4096,
        "enforce_eager": True,
    }
    assert engine.loop is backend._loop and engine.loop is not None
    assert backend._loop_thread.is_alive() and backend._loop_thread is not threading.current_thread()
    info = backend.info()
    assert (info.backend, info.gpu_memory_fraction) == ("vllm", 0.45)


def test_outputs_come_back_to_their_conversations_in_order(vllm_chat):
    backend = vllm_chat()
    conversations = [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first one"}],
        _user("the second conversation is longer"),
        _user("third"),
    ]
    out = backend.chat(conversations, max_new_tokens=5)
    assert out == [
        ChatOutput("<system> be brief <user> first", tokens_in=7, tokens_out=5),
        ChatOutput("<user> the second conversation is", tokens_in=7, tokens_out=5),
        ChatOutput("<user> third <assistant>", tokens_in=3, tokens_out=3),
    ], "the finished output of each request, not the partial one, for its own conversation"
    engine = _FakeEngine.instances[0]
    assert len(set(engine.prompts)) == 3, "one request, with its own id, per conversation"
    assert {(p.temperature, p.max_tokens, p.output_kind) for p in engine.params} == {
        (0.0, 5, _RequestOutputKind.FINAL_ONLY)
    }
    assert backend.count_tokens("a b c") == 3


def test_calls_from_several_threads_are_in_the_engine_at_once(vllm_chat):
    backend = vllm_chat()
    engine = _FakeEngine.instances[0]
    engine.hold_until = 8  # each request waits until all 4 calls x 2 conversations are in
    calls = _ChatCalls(backend, ModelProbe("postprocess", run=lambda: None))
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda i: calls.chat([_user(f"call {i} a"), _user(f"call {i} b")], 8), range(4))
        )
    assert engine.max_in_flight == 8, "no lock serialises the calls on their way into the engine"
    assert time.monotonic() - started < HOLD_S, "no request had to wait out its hold"
    for i, outputs in enumerate(results):
        assert [o.text for o in outputs] == [
            f"<user> call {i} a <assistant>",
            f"<user> call {i} b <assistant>",
        ]


def test_a_failed_request_fails_the_call_and_aborts_its_other_requests(vllm_chat):
    backend = vllm_chat()
    engine = _FakeEngine.instances[0]
    engine.hold_until = 3  # the failure comes while the other two are generating
    with pytest.raises(RuntimeError, match="engine failed"):
        backend.chat([_user("stall one"), _user("boom"), _user("stall two")], max_new_tokens=8)
    failed = next(rid for rid, words in engine.prompts.items() if "boom" in words)
    assert sorted(engine.aborted) == sorted(set(engine.prompts) - {failed})
    assert engine.in_flight == 0
    # the engine and its loop are still of use for the next call
    assert backend.chat([_user("again")], max_new_tokens=8)[0].text == "<user> again <assistant>"


def test_close_cancels_the_calls_in_flight_and_stops_the_engine_and_its_thread(vllm_chat):
    backend = vllm_chat()
    engine = _FakeEngine.instances[0]
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(backend.chat, [_user("stall")], 8)
        deadline = time.monotonic() + HOLD_S
        while engine.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.in_flight == 1
        backend.close()
        with pytest.raises(CancelledError):
            call.result(timeout=HOLD_S)
    assert engine.aborted == list(engine.prompts) and engine.in_flight == 0
    assert engine.shut_down and not backend._loop_thread.is_alive()
    backend.close()  # a second close does nothing


def test_vllm_backend_without_a_gpu_share_is_refused(fake_vllm):
    with pytest.raises(ValueError, match="needs a GPU"):
        load_chat_backend(LlmSettings(backend="vllm"), gpu_share=None)


def test_missing_vllm_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(RuntimeError, match="'vllm' extra"):
        load_chat_backend(LlmSettings(backend="vllm"), gpu_share=0.5)


class _PairingBackend:
    """Notes how many calls are inside it at once; a call waits (up to ``wait_s``) until two have
    been inside at once."""

    def __init__(self, concurrent_calls: bool, wait_s: float):
        self.concurrent_calls = concurrent_calls
        self.wait_s = wait_s
        self.inside = 0
        self.most_inside = 0
        self._changed = threading.Condition()

    def chat(self, conversations, max_new_tokens):
        with self._changed:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.most_inside >= 2, timeout=self.wait_s)
            self.inside -= 1
        return [ChatOutput("ok", 1, 1) for _ in conversations]

    def count_tokens(self, text):
        return len(text.split())

    def info(self):
        raise NotImplementedError


def _two_calls_at_once(backend) -> ModelProbe:
    probe = ModelProbe("postprocess", run=lambda: None)
    calls = _ChatCalls(backend, probe)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: calls.chat([_user("hi")], 1), range(2)))
    return probe


def test_the_wrapper_takes_turns_only_for_a_backend_that_needs_them():
    one_at_a_time = _PairingBackend(concurrent_calls=False, wait_s=0.2)  # waits it out, alone
    _two_calls_at_once(one_at_a_time)
    assert one_at_a_time.most_inside == 1

    concurrent = _PairingBackend(concurrent_calls=True, wait_s=HOLD_S)
    _two_calls_at_once(concurrent)
    assert concurrent.most_inside == 2


def test_the_wrapper_counts_real_calls_as_answers_and_not_the_probes_own():
    backend = _PairingBackend(concurrent_calls=True, wait_s=0)
    probe = ModelProbe("postprocess", run=lambda: None)
    calls = _ChatCalls(backend, probe)
    calls.chat_unrecorded([_user("Say OK.")], 1)
    assert probe.last_answer == float("-inf")
    calls.chat([_user("hi")], 1)
    assert probe.last_answer > float("-inf")
    assert calls.count_tokens("a b") == 2
