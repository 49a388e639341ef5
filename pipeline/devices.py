"""Device, dtype and GPU memory cap for model replicas.

The config says what we would like; ``torch.cuda.is_available()`` says what is there. A replica
that Ray placed on a *logical* GPU (``num_gpus: 0.5``) on a machine with no CUDA device runs on
the CPU in float32 rather than failing, so one config serves a laptop and a GPU node.

Ray's GPU fractions are logical: Ray packs replicas onto a GPU until their ``num_gpus`` add up
to 1.0, but nothing keeps a process inside its part of the memory (Ray issue #62553). So a torch
replica caps its own CUDA allocator at its fraction (``cap_cuda_memory``), and vLLM is given the
same fraction as ``gpu_memory_utilization`` (vLLM #4242).
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


def cap_cuda_memory(device: torch.device, fraction: float | None) -> float | None:
    """Cap this process's CUDA allocator at ``fraction`` of the device's memory
    (``torch.cuda.set_per_process_memory_fraction``): past it, an allocation fails with an
    out-of-memory error in this replica instead of starving the replica sharing the GPU.
    Returns the cap applied; ``None`` on the CPU or without a fraction."""
    if device.type != "cuda" or fraction is None:
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    log.info("CUDA memory of this process capped at %.0f%% of the GPU", fraction * 100)
    return fraction
