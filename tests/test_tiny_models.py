"""The generated models load through from_pretrained and follow the real checkpoint formats."""

from __future__ import annotations

import hashlib

import pytest
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from pipeline.tiny_models import main, resolve_model_path
from pipeline.tiny_whisper import whisper_special_tokens


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    main([str(out)])
    return out


def _digest(folder):
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_generation_is_deterministic(generated, tmp_path):
    main([str(tmp_path)])
    assert _digest(generated / "whisper") == _digest(tmp_path / "whisper")
    assert _digest(generated / "llm") == _digest(tmp_path / "llm")
    assert (generated / "whisper" / "tokenizer.json").read_text() == (
        tmp_path / "whisper" / "tokenizer.json"
    ).read_text()


def test_whisper_special_tokens_follow_the_real_layout(generated):
    tok = WhisperProcessor.from_pretrained(generated / "whisper").tokenizer
    ids = tok.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    assert ids("<|startoftranscript|>") == eot + 1
    assert ids("<|en|>") == eot + 2
    _, timestamps = whisper_special_tokens()
    assert len(timestamps) == 1501 and timestamps[0] == "<|0.00|>" and timestamps[-1] == "<|30.00|>"
    assert ids("<|transcribe|>") == ids("<|translate|>") + 1
    assert ids("<|notimestamps|>") == ids("<|nocaptions|>") + 1
    first_ts = ids("<|0.00|>")
    assert first_ts == ids("<|notimestamps|>") + 1 and ids("<|30.00|>") == first_ts + 1500
    # transformers finds timestamps as "everything after the last special token"
    assert tok.all_special_ids[-1] + 1 == first_ts
    assert (
        tok.decode([ids("<|1.00|>"), ids("Ġthe"), ids("<|2.00|>")], decode_with_timestamps=True)
        == "<|1.00|> the<|2.00|>"
    )


def test_whisper_generation_config_has_the_real_keys(generated):
    config = GenerationConfig.from_pretrained(generated / "whisper")
    tok = WhisperProcessor.from_pretrained(generated / "whisper").tokenizer
    assert config.lang_to_id["<|de|>"] == tok.convert_tokens_to_ids("<|de|>")
    assert config.task_to_id == {
        "transcribe": tok.convert_tokens_to_ids("<|transcribe|>"),
        "translate": tok.convert_tokens_to_ids("<|translate|>"),
    }
    assert config.no_timestamps_token_id == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert config.is_multilingual and config.alignment_heads
    model = WhisperForConditionalGeneration.from_pretrained(generated / "whisper")
    assert model.config.vocab_size >= len(tok)


def test_llm_has_a_chat_template(generated):
    tok = AutoTokenizer.from_pretrained(generated / "llm")
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    model = AutoModelForCausalLM.from_pretrained(generated / "llm")
    assert model.config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


def test_tiny_names_resolve_to_a_cache_and_others_pass_through(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHGRAPH_CACHE", str(tmp_path))
    path = resolve_model_path("tiny-random", "llm")
    assert path.startswith(str(tmp_path)) and resolve_model_path("tiny-random", "llm") == path
    assert resolve_model_path("openai/whisper-base", "whisper") == "openai/whisper-base"
    with pytest.raises(ValueError, match="unknown tiny Whisper shape"):
        resolve_model_path("tiny-random-huge", "whisper")
