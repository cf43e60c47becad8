"""Checking a requested torch device before any model is moved to it."""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["accumulation_dtype", "check_device", "module_device"]


def module_device(module: torch.nn.Module) -> torch.device | None:
    """The device of a module's first parameter or buffer (``None`` for a module without tensors)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return None


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """The dtype sums of many small terms are accumulated in on ``device``: float64, except on
    MPS, which has none (float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a :class:`torch.device`, or :class:`~cfexplain.errors.InputError` saying why it
    cannot be used here (not a device name, no CUDA/MPS in this torch build, or no such GPU index).
    ``None`` means the CPU."""
    if device is None:
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(resolved)!r} was asked for, but this torch build has no usable CUDA "
                             f"(torch {torch.__version__}); use --device cpu")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise InputError(f"device {str(resolved)!r} was asked for, but this machine has {count} CUDA device(s) "
                             f"(cuda:0 … cuda:{count - 1})")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' was asked for, but MPS is not available here; use --device cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device type {resolved.type!r} is not supported; use cpu, cuda or mps")
    return resolved
