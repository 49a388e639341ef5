"""The model probe behind every stage's ``check_health``: rate-limited, timed out, never piling up
threads behind a wedged model. The "model" here is a real function that can be made to block,
as a wedged generate would."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from deployments.health import ModelNotAnswering, ModelProbe


class Model:
    def __init__(self):
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def answer(self) -> str:
        self.calls += 1
        if self.fail:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        self.release.wait()
        return "ok"


def test_a_probe_that_answers_passes_and_is_reused_within_the_interval():
    model = Model()
    probe = ModelProbe("asr", model.answer, interval_s=60, timeout_s=1)

    async def main():
        await probe.check()
        await probe.check()

    asyncio.run(main())
    assert model.calls == 1, "the second check reused the first answer"


def test_recent_real_work_counts_as_an_answer():
    model = Model()
    probe = ModelProbe("asr", model.answer, interval_s=60, timeout_s=1)
    probe.answered()
    asyncio.run(probe.check())
    assert model.calls == 0


def test_a_wedged_model_fails_the_check_after_the_timeout_without_more_threads():
    model = Model()
    model.release.clear()
    probe = ModelProbe("asr", model.answer, interval_s=0, timeout_s=0.3)

    async def main():
        try:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(ModelNotAnswering, match="did not answer a probe within"):
                    await probe.check()
                assert time.monotonic() - started < 1.5
        finally:
            model.release.set()  # else asyncio.run waits for the stuck thread at shutdown

    asyncio.run(main())
    assert model.calls == 1, "later checks waited on the stuck probe instead of starting new ones"


def test_a_model_that_raises_fails_the_check_with_the_cause():
    model = Model()
    model.fail = True
    probe = ModelProbe("postprocess", model.answer, interval_s=0, timeout_s=1)
    with pytest.raises(ModelNotAnswering, match="illegal memory access"):
        asyncio.run(probe.check())


def test_a_model_that_comes_back_passes_again():
    model = Model()
    model.release.clear()
    probe = ModelProbe("asr", model.answer, interval_s=0, timeout_s=0.2)

    async def main():
        with pytest.raises(ModelNotAnswering):
            await probe.check()
        model.release.set()
        await asyncio.sleep(0.1)
        await probe.check()

    asyncio.run(main())


def test_a_long_real_call_in_progress_is_not_a_wedged_model_until_max_call_s():
    """A probe that would queue behind a real call (the LLM's lock) does not run while that call
    is young; one that has run past max_call_s fails the check."""
    model = Model()
    probe = ModelProbe("postprocess", model.answer, interval_s=0, timeout_s=1, max_call_s=0.3)

    async def main():
        with probe.working():
            await probe.check()
            assert model.calls == 0, "no probe while the real call is young"
            await asyncio.sleep(0.4)
            with pytest.raises(ModelNotAnswering, match="has run for"):
                await probe.check()
        assert time.monotonic() - probe.last_answer < 0.1, "the call's return counts as an answer"

    asyncio.run(main())
