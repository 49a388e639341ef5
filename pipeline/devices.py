"""Device and dtype choice for model replicas.

The config says what we would like; ``torch.cuda.is_available()`` says what is there. A replica
that Ray placed on a *logical* GPU (``num_gpus: 0.5``) on a machine with no CUDA device runs on
the CPU in float32 rather than failing, so one config serves a laptop and a GPU node.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(preference: str) -> torch.device:
    """``auto``/``cuda`` give CUDA only when a CUDA device is really visible, else the CPU."""
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        log.warning("device 'cuda' was configured but no CUDA device is visible; using the CPU")
    return torch.device("cpu")


def resolve_dtype(preference: str, device: torch.device, cuda_default: torch.dtype) -> torch.dtype:
    """CPU always computes in float32; on CUDA ``auto`` is ``cuda_default``."""
    if device.type != "cuda":
        return torch.float32
    return cuda_default if preference == "auto" else _DTYPES[preference]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def memory_in_use_bytes(device: torch.device) -> int | None:
    """Bytes this process has allocated on the device (CUDA only; ``None`` on CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return None
