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
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.tiny_llm import write_tiny_llm
from pipeline.tiny_whisper import WHISPER_SHAPES, write_tiny_whisper

#: Bump when the generated format changes, so stale caches are regenerated.
FORMAT_VERSION = 1

#: Model names that resolve to generated models instead of a folder or a hub id.
TINY_PREFIX = "tiny-random"


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
