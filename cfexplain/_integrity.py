"""Integrity manifests of saved artefacts: a deleted or edited entry is an error, not a smaller result.

A saved artefact is a JSON document beside a ``torch.save`` file of tensors. :func:`seal` adds to
the document an ``integrity`` entry: the sha256 of every tensor (its dtype, shape and bytes) and
the sha256 of the document's own canonical JSON without that entry. :func:`verify` checks both on
load and names the file and the entry that differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._torch_files import read_torch_file
from .errors import CorruptCheckpointError

__all__ = ["seal", "verify", "load_tensors", "tensor_sha256"]


def tensor_sha256(tensor: torch.Tensor) -> str:
    """The hex sha256 of a tensor's dtype, shape and contiguous CPU bytes."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}|{tuple(data.shape)}|".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def _document_sha256(document: Mapping[str, Any]) -> str:
    body = {key: value for key, value in document.items() if key != "integrity"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``document`` (as it will read back from JSON) with its ``integrity`` entry added."""
    sealed = json.loads(json.dumps(dict(document)))
    sealed["integrity"] = {"tensors": {name: tensor_sha256(t) for name, t in tensors.items()},
                           "document_sha256": _document_sha256(sealed)}
    return sealed


def verify(document: Mapping[str, Any], tensors: Mapping[str, Any], where: Path, what: str) -> None:
    """Raise :class:`~cfexplain.errors.CorruptCheckpointError` unless ``document`` and ``tensors``
    are as :func:`seal` recorded them (``where`` and ``what`` name the artefact)."""
    integrity = document.get("integrity")
    if not isinstance(integrity, dict) or not isinstance(integrity.get("tensors"), dict):
        raise CorruptCheckpointError(f"{where}: the {what} has no integrity manifest (damaged, or edited by hand)")
    if integrity.get("document_sha256") != _document_sha256(document):
        raise CorruptCheckpointError(f"{where}: the {what}'s JSON was edited or damaged after it was saved "
                                     f"(its content no longer matches its manifest)")
    recorded = integrity["tensors"]
    missing, extra = sorted(set(recorded) - set(tensors)), sorted(set(tensors) - set(recorded))
    if missing or extra:
        raise CorruptCheckpointError(f"{where}: the {what}'s tensors do not match its manifest"
                                     f"{f'; missing {missing}' if missing else ''}{f'; unexpected {extra}' if extra else ''}")
    for name, expected in recorded.items():
        value = tensors[name]
        if not isinstance(value, torch.Tensor) or tensor_sha256(value) != expected:
            raise CorruptCheckpointError(f"{where}: the {what}'s tensor {name!r} was changed or damaged "
                                         f"(sha256 differs from its manifest)")


def load_tensors(file: Path, what: str) -> dict[str, Any]:
    """The dict of tensors ``torch.save``'d at ``file`` (``weights_only``: no code runs); a missing,
    truncated or damaged file is a :class:`~cfexplain.errors.CorruptCheckpointError` naming it."""
    file = Path(file)
    if not file.is_file():
        raise CorruptCheckpointError(f"{file}: missing (the {what} is incomplete)")
    data = read_torch_file(file, f"{file} (the {what}'s tensors)")
    if not isinstance(data, dict):
        raise CorruptCheckpointError(f"{file}: not the {what}'s tensors (found {type(data).__name__})")
    return data
