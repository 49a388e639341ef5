"""Random LoRA adapters for the generated tiny Whispers, in peft's real adapter format.

Why: serving Whisper fine-tunes as LoRA adapters (``pipeline.whisper_adapters``) must be tested
with the code path a real adapter takes, and no adapter can be downloaded here. So this writes,
from a fixed seed, what peft's ``save_pretrained`` writes after training: ``adapter_config.json``
and ``adapter_model.safetensors``, for the query and value projections of every attention layer
(encoder and decoder), the layers Whisper LoRA fine-tunes usually target.

peft's usual initialisation sets LoRA's B matrices to zero, an adapter that changes nothing;
``init_lora_weights=False`` keeps torch's random initialisation of both A and B instead, large
enough that each adapter leads the tiny Whisper's greedy decoding to tokens of its own.
"""

from __future__ import annotations

from pathlib import Path

#: Adapter labels (``tiny-random-lora-<label>``) and the seed each adapter is drawn from: two, so
#: tests and benchmarks can tell which adapter decoded a window.
LORA_SEEDS: dict[str, int] = {"a": 101, "b": 202}

#: Rank and scale of the generated adapters (a small rank, as fine-tunes of speech models use).
LORA_RANK = 8
LORA_ALPHA = 16


def write_tiny_lora(out_dir: Path, base_dir: Path, label: str, base_name: str) -> Path:
    """Write LoRA adapter ``label`` for the Whisper checkpoint in ``base_dir``.

    ``base_name`` is what ``adapter_config.json`` records as the base model (the configured name,
    e.g. ``tiny-random``), so the file does not depend on where the base happens to be cached.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    if label not in LORA_SEEDS:
        raise ValueError(f"unknown tiny adapter {label!r}; use one of: {', '.join(LORA_SEEDS)}")
    out_dir = Path(out_dir)
    base = WhisperForConditionalGeneration.from_pretrained(base_dir)
    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        init_lora_weights=False,
    )
    torch.manual_seed(LORA_SEEDS[label])
    adapter = get_peft_model(base, config)
    adapter.peft_config["default"].base_model_name_or_path = base_name
    # No embedding layers are adapted: saying so spares peft a lookup of the base on the Hub.
    adapter.save_pretrained(str(out_dir), save_embedding_layers=False)
    return out_dir
