"""How a request asks Whisper to decode: the options that travel with every window to ASR.

Apart from ``pipeline.whisper`` so that the ingress, which has no model, builds them without
loading torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.schemas import Task


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; windows with equal options share one batched ``generate`` call."""

    task: Task = "transcribe"
    temperature: float = 0.0
    """0 decodes greedily; above 0 samples at that temperature."""
    prompt: str | None = None
    """Text that came before (style, spelling of names), given to the decoder as previous text."""
    word_timestamps: bool = False
    """Also time each word (costs the cross-attention weights of the alignment heads)."""
    logprobs: bool = False
    """Also return each text token's log-probability (read from the scoring pass that already runs).
    Part of the options, so only windows that all ask for it, or all do not, share a generate call."""
    adapter: str | None = None
    """The LoRA adapter (a name in ``AsrSettings.adapters``) that decodes the window; ``None``: the
    base model (or, when one adapter is merged at start, the merged model, the only one served).
    Part of the options, so windows of different adapters never share a generate call: the active
    adapter is the model's state for a whole call."""
