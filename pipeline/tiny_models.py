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
* a causal LM (Llama architecture) with a byte-level BPE tokenizer and a ChatML chat template;
* LoRA adapters for those Whispers, as peft saves them (``pipeline.tiny_lora``).

Their text output is meaningless: they exist to exercise structure, timing and limits.

``python -m pipeline.tiny_models DIR`` writes them all; model names ``tiny-random`` (and
``tiny-random-whisper-tiny-shape``, a Whisper of whisper-tiny's dimensions for benchmarks) in a
config resolve to a cached copy through :func:`resolve_model_path`, and adapter names
``tiny-random-lora-a`` and ``-b`` to one generated for the configured Whisper through
:func:`resolve_adapter_path`.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.tiny_llm import write_tiny_llm
from pipeline.tiny_lora import LORA_SEEDS, write_tiny_lora
from pipeline.tiny_whisper import WHISPER_SHAPES, write_tiny_whisper

#: Bump when the generated format changes, so stale caches are regenerated.
FORMAT_VERSION = 1

#: Model names that resolve to generated models instead of a folder or a hub id.
TINY_PREFIX = "tiny-random"


def cache_dir() -> Path:
    """Where generated models are cached (``SPEECHGRAPH_CACHE``, else ``~/.cache/speechgraph``)."""
    root = os.environ.get("SPEECHGRAPH_CACHE") or Path.home() / ".cache" / "speechgraph"
    return Path(root) / f"tiny-models-v{FORMAT_VERSION}"


def _generated(name: str, writer, config: str = "config.json") -> Path:
    """Generate a model once into the cache (``config`` names the file a finished one holds);
    safe when several replicas start at once."""
    target = cache_dir() / name
    if (target / config).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / config).exists():
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


def resolve_adapter_path(name: str, whisper: str) -> str:
    """Map a configured LoRA adapter to something peft loads, for the Whisper named ``whisper``.

    ``tiny-random-lora-<label>`` generates (once) adapter ``label`` for that tiny Whisper's shape
    and returns its cached folder; anything else (a local folder or a hub id) is returned unchanged.
    """
    if not is_tiny(name):
        return name
    prefix = f"{TINY_PREFIX}-lora-"
    label = name[len(prefix) :] if name.startswith(prefix) else ""
    if label not in LORA_SEEDS:
        raise ValueError(
            f"unknown tiny adapter {name!r}; use one of: {', '.join(prefix + known for known in LORA_SEEDS)}"
        )
    if not is_tiny(whisper):
        raise ValueError(
            f"the tiny adapter {name!r} fits only the generated tiny-random Whispers, not {whisper!r}"
        )
    base = Path(resolve_model_path(whisper, "whisper"))
    return str(
        _generated(
            f"{base.name}-lora-{label}",
            lambda d: write_tiny_lora(d, base, label, whisper),
            config="adapter_config.json",
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.tiny_models",
        description="Write small random-weight Whisper and LLM checkpoints, and LoRA adapters for the "
        "Whisper (deterministic).",
    )
    parser.add_argument(
        "dir", type=Path, help="output folder; gets whisper/, llm/ and whisper-lora-<a|b>/ inside"
    )
    parser.add_argument(
        "--whisper-shape",
        choices=sorted(WHISPER_SHAPES),
        default="tiny",
        help="Whisper dimensions (default: tiny)",
    )
    args = parser.parse_args(argv)
    whisper = write_tiny_whisper(args.dir / "whisper", args.whisper_shape)
    llm = write_tiny_llm(args.dir / "llm")
    whisper_name = TINY_PREFIX if args.whisper_shape == "tiny" else f"{TINY_PREFIX}-{args.whisper_shape}"
    adapters = [
        write_tiny_lora(args.dir / f"whisper-lora-{label}", whisper, label, whisper_name)
        for label in LORA_SEEDS
    ]
    print("\n".join(f"wrote {path}" for path in [whisper, llm, *adapters]))


if __name__ == "__main__":
    main()
