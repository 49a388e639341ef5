"""A random-weight Whisper in the real checkpoint format (see ``pipeline.tiny_models``): model,
processor with Whisper's special-token layout and 1501 timestamp tokens, and a generation config
with ``lang_to_id``, ``task_to_id``, alignment heads and suppress lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.tiny_tokenizers import BPE_VOCAB_SIZE, SEED, token_id_of, train_bpe

#: Whisper shapes by name. ``tiny`` keeps tests fast; ``whisper-tiny-shape`` has the dimensions
#: of openai/whisper-tiny so that benchmark compute is real.
WHISPER_SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
    ),
    "whisper-tiny-shape": dict(
        d_model=384,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=6,
        decoder_attention_heads=6,
        encoder_ffn_dim=1536,
        decoder_ffn_dim=1536,
    ),
    # openai/whisper-large-v3's dimensions (1.55 B parameters, 128 mel bins), for GPU benchmarks:
    # written in float16 (3 GB).
    "whisper-large-v3-shape": dict(
        d_model=1280,
        encoder_layers=32,
        decoder_layers=32,
        encoder_attention_heads=20,
        decoder_attention_heads=20,
        encoder_ffn_dim=5120,
        decoder_ffn_dim=5120,
        num_mel_bins=128,
    ),
}


def _language_tokens() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [f"<|{code}|>" for code in LANGUAGES]


def whisper_special_tokens() -> tuple[list[str], list[str]]:
    """Whisper's special tokens in checkpoint order, and its 1501 timestamp tokens."""
    specials = [
        "<|startoftranscript|>",
        *_language_tokens(),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    return specials, timestamps


def write_tiny_whisper(out_dir: Path, shape: str = "tiny") -> Path:
    """Write a random-weight Whisper checkpoint (model, processor, generation config)."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Base BPE vocabulary, then <|endoftext|> right after it, as in real checkpoints.
    bpe = train_bpe(BPE_VOCAB_SIZE, special_tokens=[])
    bpe_state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(bpe_state["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in bpe_state["merges"]]
    endoftext_id = len(vocab)
    vocab["<|endoftext|>"] = endoftext_id

    specials, timestamps = whisper_special_tokens()
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges)
    tokenizer.add_special_tokens(
        {
            "extra_special_tokens": [
                AddedToken(t, special=True, normalized=False) for t in ["<|endoftext|>", *specials]
            ]
        }
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    ids = token_id_of(tokenizer)
    assert ids("<|startoftranscript|>") == endoftext_id + 1
    assert ids("<|0.00|>") == ids("<|notimestamps|>") + 1
    vocab_size = len(tokenizer) + 1  # real checkpoints carry one spare row

    dims: dict[str, Any] = dict(WHISPER_SHAPES[shape])  # Any: spread over WhisperConfig's typed keywords
    mel_bins = dims.pop("num_mel_bins", 80)
    feature_extractor = WhisperFeatureExtractor(
        feature_size=mel_bins, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400
    )
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out_dir)

    space_id = ids("Ġ")
    suppress = sorted(
        {
            ids(t)
            for t in [
                '"',
                "#",
                "(",
                ")",
                "*",
                "+",
                "/",
                ":",
                ";",
                "<",
                "=",
                ">",
                "@",
                "[",
                "\\",
                "]",
                "^",
                "_",
                "`",
                "{",
                "|",
                "}",
                "~",
            ]
        }
        | {
            ids("<|translate|>"),
            ids("<|transcribe|>"),
            ids("<|startoflm|>"),
            ids("<|startofprev|>"),
            ids("<|nocaptions|>"),
        }
    )
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=mel_bins,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=endoftext_id,
        eos_token_id=endoftext_id,
        pad_token_id=endoftext_id,
        suppress_tokens=suppress,
        begin_suppress_tokens=[space_id, endoftext_id],
        init_std=0.2,
        **dims,
    )
    torch.manual_seed(SEED)
    model = WhisperForConditionalGeneration(config).eval()
    # Shape the random output layer (tied to the decoder embeddings) so greedy decoding writes
    # word pieces between timestamps instead of only timestamps and stray bytes: with a
    # near-uniform distribution the 1501 timestamp tokens win every step.
    with torch.no_grad():
        embeddings = model.model.decoder.embed_tokens.weight
        embeddings[:256] *= 0.1  # single bytes
        embeddings[ids("<|0.00|>") :] *= 0.2  # timestamps
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=endoftext_id,
        eos_token_id=endoftext_id,
        pad_token_id=endoftext_id,
        max_length=448,
        begin_suppress_tokens=[space_id, endoftext_id],
        suppress_tokens=suppress,
        is_multilingual=True,
        lang_to_id={tok: ids(tok) for tok in _language_tokens()},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        alignment_heads=[[dims["decoder_layers"] - 1, h] for h in range(dims["decoder_attention_heads"])],
    )
    if dims["d_model"] >= 1024:  # the large shape: float16 halves its 6 GB
        model = model.half()
    model.save_pretrained(out_dir)
    return out_dir
