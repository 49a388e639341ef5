"""Small random-weight models in the real checkpoint formats, generated here.

Why: no model weights can be downloaded where speechgraph is built and tested, yet the code
that loads and runs models must be the code that runs real checkpoints. So this module writes,
deterministically (fixed seeds, a fixed training corpus for the tokenizers), folders that load
with the very same ``from_pretrained`` calls as ``openai/whisper-*`` and a chat LLM:

* a Whisper (``WhisperForConditionalGeneration`` + ``WhisperProcessor``) whose tokenizer has
  Whisper's real special-token layout: ``<|endoftext|>`` right after the BPE vocabulary, then
  ``<|startoftranscript|>``, the language tokens, ``<|translate|>``, ``<|transcribe|>``,
  ``<|startoflm|>``, ``<|startofprev|>``, ``<|nocaptions|>``, ``<|notimestamps|>`` and the 1501
  timestamp tokens ``<|0.00|>`` .. ``<|30.00|>``; and a generation config with ``lang_to_id``,
  ``task_to_id``, ``no_timestamps_token_id``, alignment heads and suppress lists;
* a causal LM (Llama architecture) with a byte-level BPE tokenizer and a ChatML chat template.

Their text output is meaningless: they exist to exercise structure, timing and limits.

``python -m pipeline.tiny_models DIR`` writes both; model names ``tiny-random`` (and
``tiny-random-whisper-tiny-shape``, a Whisper of whisper-tiny's dimensions for benchmarks) in a
config resolve to a cached copy through :func:`resolve_model_path`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: Bump when the generated format changes, so stale caches are regenerated.
FORMAT_VERSION = 1

#: Model names that resolve to generated models instead of a folder or a hub id.
TINY_PREFIX = "tiny-random"

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

_SEED = 1234
_BPE_VOCAB_SIZE = 1000

# A fixed corpus for the byte-level BPE merges (plain English prose, written for this file).
_CORPUS = """
and so my fellow citizens ask not what the service can do for you but what you can do with it
the quick brown fox jumps over the lazy dog while the band plays on in the park
speech recognition turns sound into text one window of thirty seconds at a time
it was the first great sorrow of his life it was not so much the loss of the cotton itself
but the hopes and the dreams built around it that made the evening long and quiet
we will meet again tomorrow morning at nine to talk about the budget and the plan
please restore the punctuation and the capital letters without changing any word
a summary gives the main points of a talk in a few short sentences and a list of bullets
numbers like one two three four five six seven eight nine ten hundred thousand million
""".strip()

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _train_bpe(vocab_size: int, special_tokens: list[str]):
    """Train a deterministic byte-level BPE on the fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    return tok


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


def _token_id_of(tokenizer: PreTrainedTokenizerBase) -> Callable[[str], int]:
    """``tokenizer.convert_tokens_to_ids`` for one token: its id (the method also takes lists)."""

    def token_id(token: str) -> int:
        found = tokenizer.convert_tokens_to_ids(token)
        assert isinstance(found, int), f"{token!r} has no single id in the tokenizer: {found!r}"
        return found

    return token_id


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
    bpe = _train_bpe(_BPE_VOCAB_SIZE, special_tokens=[])
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
    ids = _token_id_of(tokenizer)
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
    torch.manual_seed(_SEED)
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


def write_tiny_llm(out_dir: Path) -> Path:
    """Write a random-weight causal LM (Llama architecture) with a ChatML chat template."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = _train_bpe(_BPE_VOCAB_SIZE, special_tokens=specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=2048,
        chat_template=_CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(out_dir)

    ids = _token_id_of(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(_SEED + 1)
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        do_sample=False,
    )
    model.save_pretrained(out_dir)
    return out_dir


def cache_dir() -> Path:
    """Where generated models are cached (``SPEECHGRAPH_CACHE``, else ``~/.cache/speechgraph``)."""
    root = os.environ.get("SPEECHGRAPH_CACHE") or Path.home() / ".cache" / "speechgraph"
    return Path(root) / f"tiny-models-v{FORMAT_VERSION}"


def _generated(name: str, writer) -> Path:
    """Generate a model once into the cache; safe when several replicas start at once."""
    target = cache_dir() / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
            try:
                writer(tmp)
                tmp.rename(target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return target


def is_tiny(name: str) -> bool:
    return name == TINY_PREFIX or name.startswith(TINY_PREFIX + "-")


def resolve_model_path(name: str, kind: str) -> str:
    """Map a configured model name to something ``from_pretrained`` loads.

    ``kind`` is ``"whisper"`` or ``"llm"``. ``tiny-random`` names generate (once) and return a
    cached folder; anything else (a local folder or a hub id) is returned unchanged.
    """
    if not is_tiny(name):
        return name
    if kind == "whisper":
        shape = name[len(TINY_PREFIX) + 1 :] or "tiny"
        if shape not in WHISPER_SHAPES:
            raise ValueError(
                f"unknown tiny Whisper shape {shape!r} in model name {name!r}; "
                f"use one of: {', '.join(TINY_PREFIX + '-' + s for s in WHISPER_SHAPES)}"
            )
        return str(_generated(f"whisper-{shape}", lambda d: write_tiny_whisper(d, shape)))
    if kind == "llm":
        if name != TINY_PREFIX:
            raise ValueError(f"unknown tiny LLM {name!r}; use {TINY_PREFIX!r}")
        return str(_generated("llm", write_tiny_llm))
    raise ValueError(f"unknown model kind {kind!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.tiny_models",
        description="Write small random-weight Whisper and LLM checkpoints (deterministic).",
    )
    parser.add_argument("dir", type=Path, help="output folder; gets whisper/ and llm/ inside")
    parser.add_argument(
        "--whisper-shape",
        choices=sorted(WHISPER_SHAPES),
        default="tiny",
        help="Whisper dimensions (default: tiny)",
    )
    args = parser.parse_args(argv)
    whisper = write_tiny_whisper(args.dir / "whisper", args.whisper_shape)
    llm = write_tiny_llm(args.dir / "llm")
    print(f"wrote {whisper}\nwrote {llm}")


if __name__ == "__main__":
    main()
