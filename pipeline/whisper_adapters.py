"""Whisper fine-tunes served as LoRA adapters: all loaded at start, one chosen per generate call,
or one merged into the weights.

Why LoRA adapters: a fine-tune for a domain (calls, medicine, a customer's names) changes a few
million weights of Whisper; served as an adapter beside the base model, one replica answers every
fine-tune and the base, and switching between them is a flag on each LoRA layer, not a reload.

Why peft's ``PeftModel`` rather than transformers' PEFT integration (``model.load_adapter``): both
inject LoRA layers into the same ``WhisperForConditionalGeneration`` object, so ``pipeline.whisper``
keeps calling the model it loaded (``PeftModel.get_base_model()`` is that object). But
transformers 5.23's ``load_adapter`` reports the weights of every adapter loaded before as
"MISSING ... newly initialized" (its check takes any key holding "lora", or the adapter's name, as
the new adapter's; the weights are in fact untouched), an alarm at every start, while peft's
loader checks exactly the adapter's own keys and names a size mismatch (an adapter trained on
another Whisper size). peft also merges an adapter into the weights (``merge_and_unload``).

The active adapter is state of the whole model (every LoRA layer), and language detection may run
in another thread beside a transcription (the ASR deployment calls both through
``asyncio.to_thread``), so choosing an adapter and running the model with it happen under one lock.

Windows of different adapters are decoded in separate calls (``DecodeOptions.adapter``). peft can
give each row of one batch its own adapter (``adapter_names=[...]``), and on the tiny Whisper that
gives the same tokens as separate calls, timestamps and word timestamps included; but the encoder
pass that language detection, ``generate`` and the scoring pass share runs outside ``generate``,
where only peft's private ``LoraModel._enable_peft_forward_hooks`` reaches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

import torch
from transformers import WhisperForConditionalGeneration

from pipeline.settings import AsrSettings
from pipeline.tiny_models import resolve_adapter_path

if TYPE_CHECKING:  # peft takes seconds to import: only a Whisper with adapters needs it
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTuner


class WhisperAdapters:
    """The LoRA adapters of one loaded Whisper, and which one decodes a call.

    ``model`` is the Whisper to run: the one given, with LoRA layers injected when adapters are
    chosen per request, or with ``merge_adapter`` merged into its weights.
    """

    def __init__(self, model: WhisperForConditionalGeneration, settings: AsrSettings, device: torch.device):
        self.merged = settings.merge_adapter
        self.names = tuple(settings.adapters)
        self.model = model
        self._lock = threading.Lock()
        self._peft: PeftModel | None = None
        if self.merged is not None:
            self.model = _attach(None, model, self.merged, settings, device).merge_and_unload()
            return
        for name in self.names:
            self._peft = _attach(self._peft, model, name, settings, device)
            _check_switchable(self._peft, name, settings.adapters[name])

    def decoded_by(self, name: str | None) -> str | None:
        """The adapter that decodes a call asking for ``name`` (``None``: the base model); an
        adapter that is not served is a ``ValueError`` naming it."""
        if name is not None and name not in self.names:
            served = ", ".join(self.names) or "none"
            raise ValueError(f"unknown Whisper adapter {name!r}; this model serves adapters: {served}")
        return self.merged or name

    @contextmanager
    def selected(self, name: str | None) -> Iterator[str | None]:
        """Run the body with adapter ``name`` active (``None``: the base model); yields the adapter
        that decodes. With adapters to choose from, the body holds the model alone."""
        decoder = self.decoded_by(name)
        if self._peft is None:  # no adapter, or one merged: nothing to switch
            yield decoder
            return
        tuner = cast("BaseTuner", self._peft.base_model)  # the LoRA tuner of the PeftModel
        with self._lock:
            if name is None:
                tuner.disable_adapter_layers()
            else:
                tuner.enable_adapter_layers()
                self._peft.set_adapter(name, inference_mode=True)
            yield decoder


def _attach(
    peft_model: PeftModel | None,
    model: WhisperForConditionalGeneration,
    name: str,
    settings: AsrSettings,
    device: torch.device,
) -> PeftModel:
    """Load adapter ``name`` beside those of ``peft_model``, or as the first one, wrapping ``model``
    (its LoRA layers are injected in place)."""
    from peft import PeftModel

    source = settings.adapters[name]
    # peft upcasts float16 adapters to float32 for stable training; serving keeps the model's
    # dtype (autocast_adapter_dtype=False), so the LoRA product costs what the layer beside it costs.
    try:
        path = resolve_adapter_path(source, settings.model)
        if peft_model is None:
            return PeftModel.from_pretrained(
                model, path, adapter_name=name, autocast_adapter_dtype=False, torch_device=str(device)
            )
        peft_model.load_adapter(
            path, adapter_name=name, autocast_adapter_dtype=False, torch_device=str(device)
        )
        return peft_model
    except Exception as exc:  # peft, the Hub client and torch each raise their own kinds
        raise RuntimeError(
            f"asr.adapters: adapter {name!r} ({source}) does not load onto Whisper {settings.model!r}: "
            f"{exc}. Give a local folder holding peft's adapter_config.json and adapter_model.safetensors, "
            "or a reachable Hub id, of a LoRA adapter trained on this Whisper (the same size); or "
            "remove it from asr.adapters."
        ) from exc


def _check_switchable(peft_model: PeftModel, name: str, source: str) -> None:
    """Refuse an adapter that trained the base layers' biases: loading it overwrites them, so
    neither the base model nor another adapter would decode as trained beside it."""
    bias = getattr(peft_model.peft_config[name], "bias", "none")
    if bias != "none":
        raise RuntimeError(
            f"asr.adapters: adapter {name!r} ({source}) trains the base model's biases (bias={bias!r}), "
            "which loading it overwrites, so it cannot be switched per request: merge it at start "
            "(asr.merge_adapter, as the only adapter) or train it with bias='none'"
        )
