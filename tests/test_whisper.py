"""Whisper through transformers on the generated tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED_AUDIO

from deployments.http_errors import http_status
from pipeline.audio import decode_audio
from pipeline.decoding import DecodeOptions
from pipeline.errors import InvalidParameter
from pipeline.languages import normalize_language
from pipeline.settings import AsrSettings
from pipeline.whisper import WhisperTranscriber, WindowAudio
from pipeline.windows import plan_windows


@pytest.fixture(scope="module")
def whisper():
    return WhisperTranscriber(AsrSettings(model="tiny-random", max_new_tokens=48, device="auto"))


@pytest.fixture(scope="module")
def speech():
    return decode_audio(SHARED_AUDIO / "jfk.wav", max_duration_s=60)


def test_runs_on_cpu_in_float32_when_no_gpu(whisper):
    info = whisper.info()
    assert info.device == "cpu" and info.dtype == "float32" and info.load_s > 0


def test_batched_windows_give_absolute_ordered_segments_inside_each_window(whisper, speech):
    audio = np.concatenate([speech] * 5)  # 55 s -> 2 windows
    windows = plan_windows(audio.size, 16000, 30.0)
    out = whisper.transcribe([WindowAudio(w.cut(audio), w.start_s, w.index) for w in windows], language="en")
    assert [t.window for t in out] == [0, 1]
    for transcript, window in zip(out, windows, strict=True):
        assert transcript.language == "en"
        assert transcript.segments
        for seg in transcript.segments:
            assert window.start_s <= seg.start <= seg.end <= window.end_s + 1e-6
            assert seg.text.strip() and seg.tokens
            assert all(t < whisper.eos_token_id for t in seg.tokens)
        starts = [s.start for s in transcript.segments]
        assert starts == sorted(starts)


def test_batching_does_not_change_the_result(whisper, speech):
    one = whisper.transcribe([WindowAudio(speech, 0.0, 0)], language="en")
    two = whisper.transcribe(
        [WindowAudio(speech, 0.0, 0), WindowAudio(speech[::-1].copy(), 11.0, 1)], language="en"
    )
    assert one[0].segments == two[0].segments


def test_language_is_detected_when_not_given(whisper, speech):
    detected = whisper.detect_language(speech)
    assert f"<|{detected}|>" in whisper.generation_config.lang_to_id
    out = whisper.transcribe([WindowAudio(speech, 0.0, 0)], language=None)
    assert out[0].language == detected


def test_translate_uses_the_translate_task(whisper, speech):
    transcribe = whisper.transcribe([WindowAudio(speech, 0.0, 0)], language="de", task="transcribe")
    translate = whisper.transcribe([WindowAudio(speech, 0.0, 0)], language="de", task="translate")
    # Different task tokens in the prompt lead the (random) decoder elsewhere.
    assert [s.tokens for s in transcribe[0].segments] != [s.tokens for s in translate[0].segments]


def test_segment_times_are_clamped_to_a_short_window(whisper, speech):
    short = speech[: 16000 * 2]
    out = whisper.transcribe([WindowAudio(short, 100.0, 3)], language="en")
    assert all(100.0 <= s.start <= s.end <= 102.0 for s in out[0].segments)


@pytest.mark.parametrize(
    "given,code", [("en", "en"), ("EN", "en"), ("German", "de"), (None, None), ("", None)]
)
def test_normalize_language(given, code):
    assert normalize_language(given) == code


def test_unknown_language_names_the_parameter():
    with pytest.raises(InvalidParameter) as info:
        normalize_language("xx")
    assert info.value.param == "language" and http_status(info.value) == 400


def test_word_times_come_from_cross_attention_alignment(whisper, speech):
    """Each word starts at the DTW time transformers gives its first token, not at an even split."""
    out = whisper.transcribe(
        [WindowAudio(speech, 5.0, 0)], language="en", options=DecodeOptions(word_timestamps=True)
    )
    features, mask = whisper._features([speech])
    raw = whisper.model.generate(
        features,
        attention_mask=mask,
        generation_config=whisper.generation_config,
        language="en",
        return_timestamps=True,
        return_segments=True,
        return_token_timestamps=True,
        force_unique_generate_call=True,
    )
    aligned = {round(5.0 + float(t), 3) for seg in raw["segments"][0] for t in seg["token_timestamps"]}
    segments = out[0].segments
    words = [w for s in segments for w in s.words]
    assert words
    for seg in segments:
        for w in seg.words:
            assert seg.start <= w.start <= w.end <= seg.end
            assert w.start in aligned | {seg.start, seg.end}
    assert [w.word for w in words] == [w for s in segments for w in s.text.split()]


def test_segments_carry_whisper_decoding_metrics(whisper, speech):
    from pipeline.whisper import compression_ratio

    out = whisper.transcribe(
        [WindowAudio(speech, 30.0, 1)], language="en", options=DecodeOptions(temperature=0.5)
    )
    segments = out[0].segments
    text = "".join(s.text for s in segments)
    for seg in segments:
        assert seg.seek == 3000 and seg.temperature == 0.5
        assert seg.avg_logprob < 0 and 0 < seg.no_speech_prob < 1
        assert seg.compression_ratio == pytest.approx(compression_ratio(text), abs=1e-4)
    assert compression_ratio("ab" * 200) > compression_ratio("the quick brown fox") > 0


def test_a_long_prompt_keeps_its_end_and_special_token_text_is_plain(whisper, speech):
    ids = whisper._prompt_ids("<|endoftext|> " + "word " * 1000 + "last")
    assert ids[0] == whisper.prev_token_id
    assert whisper.eos_token_id not in ids.tolist()
    assert len(ids) <= 1 + whisper.model.config.max_target_positions - whisper.settings.max_new_tokens - 4
    assert whisper.tokenizer.decode(ids[1:]).endswith("word last")
    out = whisper.transcribe(
        [WindowAudio(speech, 0.0, 0)],
        language="en",
        options=DecodeOptions(prompt="<|endoftext|> " + "word " * 1000),
    )
    assert out[0].segments


def test_the_benchmark_whisper_decodes_a_fixed_length_per_window(speech):
    """The benchmarks' premise: random weights never predict end-of-text, so a window of the
    whisper-tiny-shaped model decodes exactly ``max_new_tokens`` tokens, speech or not."""
    transcriber = WhisperTranscriber(AsrSettings(model="tiny-random-whisper-tiny-shape", max_new_tokens=40))
    lengths = []
    generate = transcriber.model.generate

    def counting_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        sequences = out["sequences"]
        assert not (sequences == transcriber.eos_token_id).any(), "no window ended early"
        lengths.extend([sequences.shape[1]] * sequences.shape[0])
        return out

    transcriber.model.generate = counting_generate
    noise = np.random.default_rng(0).normal(0, 0.003, 16000).astype(np.float32)
    transcriber.transcribe([WindowAudio(speech, 0.0, 0), WindowAudio(noise, 0.0, 1)], language="en")
    prompt = 3  # <|startoftranscript|><|en|><|transcribe|>
    assert lengths == [prompt + 40, prompt + 40]
    assert transcriber.model.config.d_model == 384 and transcriber.model.config.encoder_layers == 4


def _scored_independently(whisper, audio, prompt):
    """Each of transformers' raw segments as (text token, log-softmax) pairs, from a decoder
    forward of our own over prompt + start tokens + the segments' tokens (the segments tile the
    generated tokens in order, so a token's prefix is everything before it)."""
    features, _ = whisper._features([audio])
    prompt_ids = whisper._prompt_ids(prompt)
    raw = whisper.model.generate(
        features,
        generation_config=whisper.generation_config,
        language="en",
        prompt_ids=prompt_ids,
        return_timestamps=True,
        return_segments=True,
        force_unique_generate_call=True,
    )["segments"][0]
    start = whisper.tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|en|>", "<|transcribe|>"])
    prefix = ([] if prompt_ids is None else prompt_ids.tolist()) + start
    generated = [t for seg in raw for t in seg["tokens"].tolist()]
    with torch.inference_mode():
        decoder_input = torch.tensor([prefix + generated], device=whisper.device)
        logits = whisper.model(input_features=features, decoder_input_ids=decoder_input).logits[0]
    log_softmax = logits.float().log_softmax(-1)
    per_segment, position = [], len(prefix)
    for seg in raw:
        entries = []
        for token in seg["tokens"].tolist():
            if token < whisper.eos_token_id:
                entries.append((token, float(log_softmax[position - 1, token])))
            position += 1
        per_segment.append(entries)
    return per_segment


def _logprob_tolerance(whisper):
    """Our forward and the scoring pass run different shapes: equal up to float rounding."""
    return 1e-4 if whisper.dtype == torch.float32 else 5e-2


@pytest.mark.parametrize(
    "seconds,prompt,drops",
    [(30.0, None, False), (30.0, "hello there", False), (2.0, None, True)],
    ids=["full-window", "after-a-prompt", "segments-past-the-end-dropped"],
)
def test_logprobs_are_the_log_softmax_of_exactly_the_segments_text_tokens(
    whisper, speech, seconds, prompt, drops
):
    audio = np.concatenate([speech] * 3)[: int(16000 * seconds)]
    out = whisper.transcribe(
        [WindowAudio(audio, 0.0, 0)], language="en", options=DecodeOptions(logprobs=True, prompt=prompt)
    )[0]
    raw = _scored_independently(whisper, audio, prompt)
    if drops:
        assert len(out.segments) < len(raw), "the short window should drop segments timed past its end"
    # Segments kept are an ordered subset of transformers' segments: match each to its own.
    remaining, expected = iter(raw), []
    for seg in out.segments:
        entries = next((e for e in remaining if [t for t, _ in e] == seg.tokens), None)
        assert entries is not None, f"segment {seg.text!r} is not one of transformers' segments"
        expected += entries
    assert out.logprobs is not None and len(out.logprobs) == len(expected) > 0
    assert [t for t, _ in expected] == [t for s in out.segments for t in s.tokens]
    assert [lp.token for lp in out.logprobs] == [whisper.tokenizer.decode([t]) for t, _ in expected]
    assert [lp.logprob for lp in out.logprobs] == pytest.approx(
        [v for _, v in expected], abs=_logprob_tolerance(whisper)
    )


def test_logprobs_are_none_unless_asked(whisper, speech):
    out = whisper.transcribe(
        [WindowAudio(speech, 0.0, 0), WindowAudio(speech[::-1].copy(), 11.0, 1)], language="en"
    )
    assert [t.logprobs for t in out] == [None, None]


def test_logprob_bytes_join_into_the_window_text(whisper, speech):
    audio = np.concatenate([speech] * 3)[: 16000 * 30]
    windows = [WindowAudio(audio, 0.0, 0), WindowAudio(audio[::-1].copy(), 30.0, 1)]
    for out in whisper.transcribe(windows, language="en", options=DecodeOptions(logprobs=True)):
        assert out.logprobs
        assert len(out.logprobs) == sum(len(s.tokens) for s in out.segments)
        for lp in out.logprobs:
            assert lp.logprob <= 0
            assert all(0 <= b <= 255 for b in lp.bytes)
            if "\ufffd" not in lp.token:
                assert bytes(lp.bytes) == lp.token.encode("utf-8")
        joined = b"".join(bytes(lp.bytes) for lp in out.logprobs)
        assert joined.decode("utf-8", errors="replace") == "".join(s.text for s in out.segments)


def test_token_bytes_are_raw_even_when_a_token_holds_part_of_a_character(whisper):
    ids = whisper.tokenizer("é ü", add_special_tokens=False).input_ids
    entries = [whisper.scorer.token_logprob(t, -1.0) for t in ids]
    assert b"".join(bytes(e.bytes) for e in entries).decode("utf-8") == "é ü"
    assert [e.token for e in entries] == [whisper.tokenizer.decode([t]) for t in ids]
    assert any(e.token == "\ufffd" for e in entries), "the tiny vocabulary splits é into its two bytes"


def test_windows_asking_and_not_asking_for_logprobs_each_get_what_they_asked(whisper, speech):
    """ASR groups windows by their options, so different flags go through separate generate
    calls; the flag changes nothing else, and within a call padded rows keep their own logprobs."""
    asked, plain = DecodeOptions(logprobs=True), DecodeOptions()
    assert asked != plain and len({asked, plain}) == 2
    first, second = WindowAudio(speech, 0.0, 0), WindowAudio(speech[: 16000 * 2].copy(), 11.0, 1)
    together = whisper.transcribe([first, second], language="en", options=asked)
    alone = whisper.transcribe([first], language="en", options=asked)[0]
    without = whisper.transcribe([second], language="en", options=plain)[0]
    assert without.logprobs is None and without.segments == together[1].segments
    assert alone.segments == together[0].segments
    assert alone.logprobs is not None and together[0].logprobs is not None
    assert [lp.token for lp in alone.logprobs] == [lp.token for lp in together[0].logprobs]
    assert [lp.logprob for lp in alone.logprobs] == pytest.approx(
        [lp.logprob for lp in together[0].logprobs], abs=_logprob_tolerance(whisper)
    )
