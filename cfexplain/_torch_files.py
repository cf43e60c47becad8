"""Reading ``torch.save`` files: ``weights_only`` (no code runs), then every tensor checked against
its storage before anything uses it.

``torch.load`` rebuilds a tensor as a view of its stored bytes, with the size and strides the file
claims. A file that gives a tiny storage a huge size with zero strides loads in milliseconds and
allocates gigabytes at the first operation that copies it (a hash, a ``clone``, a convolution). A
saved tensor never has more elements than its storage, so :func:`check_tensors` refuses one that
does, and any layout other than the dense one cfexplain saves (sparse tensors), before any use.
"""

from __future__ import annotations

import argparse
import io
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from ._io import atomic_write
from .errors import CorruptCheckpointError, UnsafeCheckpointError, describe_exception

__all__ = ["read_torch_file", "write_torch_file", "check_tensors"]

_MAX_DEPTH = 64


def write_torch_file(path: str | Path, value: Any) -> None:
    """``torch.save(value)`` to ``path``, atomically (:func:`~cfexplain._io.atomic_write`) and byte
    for byte the same for the same value: the archive is made in memory, so its inner folder name
    does not come from the temporary file's random name, as it would if torch wrote the file."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(buffer.getvalue()))


def read_torch_file(source: str | Path | IO[bytes], where: object, *, safe_globals: Iterable[type] = ()) -> Any:
    """``torch.load(source, weights_only=True)`` on the CPU, with :func:`check_tensors` applied.

    Args:
        source: a path or a binary stream.
        where: how errors name the file (its path, or "the <artefact> at <path>").
        safe_globals: extra classes the file may hold (``argparse.Namespace`` in rosinality files).

    Raises:
        UnsafeCheckpointError: ``weights_only`` refused the file (it asks for code).
        CorruptCheckpointError: the file is truncated or damaged, or a tensor does not fit its storage.
    """
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            loaded = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"{where}: torch.load(weights_only=True) refused the file: "
                                    f"{str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, OSError, TypeError, SystemError … on damage
        raise CorruptCheckpointError(f"{where}: truncated or damaged torch file ({describe_exception(exc)})") from exc
    check_tensors(loaded, where)
    return loaded


def check_tensors(value: Any, where: object, *, _depth: int = 0, _path: str = "") -> None:
    """Raise :class:`~cfexplain.errors.CorruptCheckpointError` for a tensor anywhere in ``value``
    (dicts, lists, tuples, namespaces) that is not dense or claims more elements than its storage
    holds, or for nesting deeper than any saved file has."""
    if _depth > _MAX_DEPTH:
        raise CorruptCheckpointError(f"{where}: nested more than {_MAX_DEPTH} levels deep (a damaged file)")
    if isinstance(value, torch.Tensor):
        _check_tensor(value, where, _path or "the tensor")
        return
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_tensors(item, where, _depth=_depth + 1, _path=f"{_path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_tensors(item, where, _depth=_depth + 1, _path=f"{_path}[{index}]")


def _check_tensor(tensor: torch.Tensor, where: object, name: str) -> None:
    if tensor.layout != torch.strided:
        raise CorruptCheckpointError(f"{where}: {name} is a {tensor.layout} tensor; cfexplain's files hold dense "
                                     f"tensors only")
    if any(stride < 0 for stride in tensor.stride()):
        raise CorruptCheckpointError(f"{where}: {name} has a negative stride (a damaged file)")
    capacity = tensor.untyped_storage().nbytes() // max(1, tensor.element_size())
    if tensor.numel() > max(capacity, 1):
        raise CorruptCheckpointError(f"{where}: {name} claims {tensor.numel()} elements on a storage of {capacity} "
                                     f"(a damaged or hostile file: its strides repeat the same values)")
