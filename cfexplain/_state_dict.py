"""Reading plain state-dict files and loading them strictly, with clear errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._torch_files import read_torch_file
from .errors import CheckpointNotFoundError, CorruptCheckpointError, ShapeError

__all__ = ["check_state_shapes", "load_state_dict_file", "load_state_strict"]


def check_state_shapes(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`~cfexplain.errors.ShapeError` unless ``state`` fits ``model`` exactly
    (same keys, same shapes); the message lists what is missing, unexpected or mis-shaped."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shapes", wrong)):
        if items:
            problems.append(f"{label} {items[:8]}{' …' if len(items) > 8 else ''}")
    if problems:
        raise ShapeError(f"weights do not fit the {type(model).__name__} network: " + "; ".join(problems))


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file, read with ``weights_only=True``.

    Accepts a bare state dict or one wrapped as ``{"state_dict": …}``, and strips a
    ``module.`` prefix (``nn.DataParallel`` checkpoints). A damaged file, or one with NaN/inf
    weights, is a :class:`~cfexplain.errors.CorruptCheckpointError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint file at {path}")
    obj = read_torch_file(path, path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptCheckpointError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    state = dict(obj)
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CorruptCheckpointError(f"{path}: the weight {key!r} holds NaN or infinite values (a damaged file)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: object = "weights") -> None:
    """Load ``state`` into ``model`` exactly, treating BatchNorm ``num_batches_tracked`` as optional."""
    state = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    try:
        check_state_shapes(model, state)
    except ShapeError as exc:
        raise ShapeError(f"{source}: {exc}") from None
    model.load_state_dict(state)
