"""Fingerprints of a run's inputs, naming its checkpoint files (a checkpoint resumes only the run it is of)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["fingerprint", "update_with_module"]


def update_with_module(digest: Any, module: torch.nn.Module) -> None:
    """Feed a model to ``digest``: its weights' recorded sha256 where its provenance has one (and
    which of the file's networks it is, when not the default moving average), else the bytes of
    every tensor of its state."""
    provenance = getattr(module, "provenance", None) or {}
    if provenance.get("sha256"):
        digest.update(str(provenance["sha256"]).encode())
        if provenance.get("network", "ema") != "ema":
            digest.update(str(provenance["network"]).encode())
        return
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())


def _update(digest: Any, value: Any) -> None:
    if isinstance(value, torch.nn.Module):
        digest.update(type(value).__name__.encode())
        update_with_module(digest, value)
    elif isinstance(value, torch.Tensor):
        digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _update(digest, value[key])
    elif isinstance(value, Sequence) and not isinstance(value, str):
        digest.update(f"[{len(value)}".encode())
        for item in value:
            _update(digest, item)
    else:
        digest.update(json.dumps(value, default=repr).encode())


def fingerprint(*values: Any) -> str:
    """A short hex digest of ``values``: tensors by their bytes, models by their weights, mappings
    and sequences item by item, anything else by its JSON (or ``repr``)."""
    digest = hashlib.sha256()
    for value in values:
        _update(digest, value)
    return digest.hexdigest()[:24]
