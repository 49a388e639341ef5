"""Whisper LoRA adapters (peft) on the generated tiny Whisper: chosen per request, batched apart,
or one merged at start. The tiny models' words are meaningless: these check which weights decoded
what, through the token ids."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_AUDIO
from pydantic import ValidationError
from safetensors.torch import load_file

from deployments.asr import WindowRequest, generate_calls
from pipeline.audio import decode_audio
from pipeline.decoding import DecodeOptions
from pipeline.schemas import WindowTranscript
from pipeline.settings import AsrSettings
from pipeline.tiny_lora import write_tiny_lora
from pipeline.tiny_models import resolve_adapter_path, resolve_model_path
from pipeline.whisper import WhisperTranscriber, WindowAudio
from pipeline.windows import Window

ADAPTERS = {"calls": "tiny-random-lora-a", "clinic": "tiny-random-lora-b"}


def _settings(**changes) -> AsrSettings:
    return AsrSettings(model="tiny-random", max_new_tokens=32, **changes)


@pytest.fixture(scope="module")
def adapted():
    return WhisperTranscriber(_settings(adapters=ADAPTERS))


@pytest.fixture(scope="module")
def plain():
    return WhisperTranscriber(_settings())


@pytest.fixture(scope="module")
def windows():
    jfk = decode_audio(SHARED_AUDIO / "jfk.wav", max_duration_s=60)
    libri = decode_audio(SHARED_AUDIO / "librispeech-1995-1837-0001.wav", max_duration_s=60)
    return [WindowAudio(jfk, 0.0, 0), WindowAudio(libri, 11.0, 1)]


def _tokens(transcripts: list[WindowTranscript]) -> list[list[tuple[float, float, list[int]]]]:
    """What the decoder wrote in each window: its text tokens and timestamp tokens (as times)."""
    return [[(s.start, s.end, s.tokens) for s in t.segments] for t in transcripts]


def _decode(transcriber, windows, adapter: str | None, **options) -> list[WindowTranscript]:
    return transcriber.transcribe(windows, language="en", options=DecodeOptions(adapter=adapter, **options))


def test_an_adapter_changes_what_the_decoder_writes(adapted, windows):
    base = _decode(adapted, windows, None)
    calls = _decode(adapted, windows, "calls")
    assert _tokens(calls) != _tokens(base)
    assert all(t.segments for t in calls)
    assert [t.adapter for t in calls] == ["calls", "calls"] and [t.adapter for t in base] == [None, None]


def test_two_adapters_decode_differently_and_each_window_names_its_adapter(adapted, windows):
    calls, clinic = _decode(adapted, windows, "calls"), _decode(adapted, windows, "clinic")
    assert _tokens(calls) != _tokens(clinic)
    assert {t.adapter for t in clinic} == {"clinic"}


def test_the_base_model_stays_what_it_is_without_adapters(adapted, plain, windows):
    with_adapters = _decode(adapted, windows, None, word_timestamps=True, logprobs=True)
    without = _decode(plain, windows, None, word_timestamps=True, logprobs=True)
    # Disabled LoRA layers run only the base layer: the same numbers, so the same scores too.
    assert [t.segments for t in with_adapters] == [t.segments for t in without]
    assert [t.logprobs for t in with_adapters] == [t.logprobs for t in without]


def test_switching_back_and_forth_leaks_no_state_and_loads_nothing(adapted, windows, monkeypatch):
    from peft import PeftModel

    first = {name: _tokens(_decode(adapted, windows, name)) for name in (None, "calls", "clinic")}

    def no_loading(*args, **kwargs):
        raise AssertionError("an adapter was loaded again")

    monkeypatch.setattr(PeftModel, "from_pretrained", no_loading)
    monkeypatch.setattr(PeftModel, "load_adapter", no_loading)
    for name in ("clinic", None, "calls", "calls", None, "clinic", "calls"):
        assert _tokens(_decode(adapted, windows, name)) == first[name], name


def test_an_adapter_merged_at_start_decodes_as_when_chosen_per_request(adapted, windows):
    merged = WhisperTranscriber(_settings(adapters={"calls": ADAPTERS["calls"]}, merge_adapter="calls"))
    per_request = _tokens(_decode(adapted, windows, "calls"))
    # Merging adds B @ A into each weight, a different float sum than adding the LoRA product
    # after the layer: the token ids, not the scores, must agree.
    for asked in (None, "calls"):
        out = _decode(merged, windows, asked)
        assert _tokens(out) == per_request
        assert {t.adapter for t in out} == {"calls"}
    with pytest.raises(ValueError, match="'clinic'"):
        _decode(merged, windows, "clinic")


def test_an_unknown_adapter_is_refused_by_name(adapted, plain, windows):
    with pytest.raises(ValueError, match=r"'radio'.*calls, clinic"):
        _decode(adapted, windows, "radio")
    with pytest.raises(ValueError, match="'calls'"):
        _decode(plain, windows, "calls")
    with pytest.raises(ValueError, match="'radio'"):
        adapted.detect_language(windows[0].audio, "radio")


def test_language_detection_runs_with_the_adapter_asked_for(adapted, windows):
    audio = windows[0].audio
    detected = {name: adapted.detect_language(audio, name) for name in (None, "calls", "clinic")}
    for name, language in detected.items():
        out = adapted.transcribe(windows[:1], language=None, options=DecodeOptions(adapter=name))
        assert out[0].language == language
    assert len(set(detected.values())) > 1  # the tiny adapters lead detection elsewhere too


def test_detection_beside_transcription_in_threads_keeps_each_on_its_adapter(adapted, windows):
    """The deployment runs both through asyncio.to_thread: the lock keeps "select, then run" whole
    (without it, this saw 15 of 36 calls decoded by the other thread's adapter)."""
    audio = windows[0].audio
    expected_language = adapted.detect_language(audio, None)
    assert adapted.detect_language(audio, "clinic") != expected_language  # else this proves nothing
    expected_tokens = _tokens(_decode(adapted, windows, "clinic"))
    decoded, detected = [], []
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):  # interleaved, so that decoding and detection overlap
            decoded.append(pool.submit(_decode, adapted, windows, "clinic"))
            detected += [pool.submit(adapted.detect_language, audio, None) for _ in range(3)]
        assert [_tokens(f.result()) for f in decoded] == [expected_tokens] * len(decoded)
        assert [f.result() for f in detected] == [expected_language] * len(detected)


def test_windows_of_different_adapters_go_to_different_generate_calls(adapted, windows):
    adapters = ["calls", None, "clinic", "calls", None]
    requests = [
        WindowRequest(
            windows[i % 2].audio,
            Window(index=i, start=176_000 * i, end=176_000 * (i + 1), sample_rate=16000),
            "en",
            DecodeOptions(adapter=name),
        )
        for i, name in enumerate(adapters)
    ]
    calls = generate_calls(requests)
    assert sorted(len(call) for call in calls) == [1, 2, 2]
    assert sorted(i for call in calls for i, _ in call) == list(range(len(adapters)))
    for call in calls:
        (adapter,) = {request.options.adapter for _, request in call}
        out = adapted.transcribe(
            [WindowAudio(r.audio, r.window.start_s, r.window.index) for _, r in call],
            language="en",
            options=call[0][1].options,
        )
        assert [t.adapter for t in out] == [adapter] * len(call)
        assert [t.window for t in out] == [i for i, _ in call]


def test_an_adapter_that_does_not_load_fails_the_start_naming_it(tmp_path):
    misfit = tmp_path / "misfit"
    shutil.copytree(resolve_adapter_path("tiny-random-lora-a", "tiny-random"), misfit)
    config = json.loads((misfit / "adapter_config.json").read_text())
    (misfit / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["c_attn"]}))
    (tmp_path / "empty").mkdir()
    for name, source in [("empty", tmp_path / "empty"), ("misfit", misfit)]:
        with pytest.raises(RuntimeError, match=f"adapter '{name}' \\({source}\\).*asr.adapters"):
            WhisperTranscriber(_settings(adapters={"calls": ADAPTERS["calls"], name: str(source)}))


@pytest.mark.parametrize(
    "changes,key",
    [
        (dict(adapters={"two words": "x"}), "asr.adapters"),
        (dict(adapters={"v1.2": "x"}), "asr.adapters"),
        (dict(adapters={"calls": " "}), "asr.adapters"),
        (dict(adapters={"tiny-random": "x"}), "asr.adapters"),
        (dict(adapters={"base": "x"}), "asr.adapters: 'base' is reserved"),
        (dict(adapters={"calls": "x"}, merge_adapter="clinic"), "asr.merge_adapter"),
        (dict(adapters=ADAPTERS, merge_adapter="calls"), "asr.merge_adapter"),
    ],
)
def test_bad_adapter_settings_are_refused_naming_the_key(changes, key):
    with pytest.raises(ValidationError, match=key):
        _settings(**changes)


def test_tiny_adapters_are_peft_adapters_with_weights_of_their_own(tmp_path):
    folders = {
        label: Path(resolve_adapter_path(f"tiny-random-lora-{label}", "tiny-random")) for label in "ab"
    }
    config = json.loads((folders["a"] / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == "tiny-random"
    weights = {label: load_file(folder / "adapter_model.safetensors") for label, folder in folders.items()}
    assert weights["a"].keys() == weights["b"].keys()
    b_keys = [key for key in weights["a"] if "lora_B" in key]
    assert b_keys and all(weights["a"][key].any() for key in b_keys)  # not peft's zeros
    assert any(not np.array_equal(weights["a"][k].numpy(), weights["b"][k].numpy()) for k in b_keys)
    again = write_tiny_lora(
        tmp_path / "a", Path(resolve_model_path("tiny-random", "whisper")), "a", "tiny-random"
    )
    assert (again / "adapter_model.safetensors").read_bytes() == (
        folders["a"] / "adapter_model.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    "name,whisper,message",
    [
        ("tiny-random-lora-z", "tiny-random", "unknown tiny adapter"),
        ("tiny-random-lora-a", "openai/whisper-small", "fits only the generated tiny-random"),
    ],
)
def test_tiny_adapter_names_are_checked(name, whisper, message):
    with pytest.raises(ValueError, match=message):
        resolve_adapter_path(name, whisper)
