"""Batches of one fixed size, so that an item's result does not depend on its neighbours.

CPU kernels round an item's result differently with the batch's size (a generator's gradient by up
to 2e-4), though not with the other items' values or the item's place in the batch. Running every
batch at the same size, the last one padded with copies of its last item, makes each item's result
depend on the item alone (and the batch size)."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["padded", "in_fixed_batches"]


def padded(items: torch.Tensor, size: int) -> torch.Tensor:
    """``items`` with its last row repeated up to ``size`` rows."""
    missing = size - items.shape[0]
    return items if missing <= 0 else torch.cat([items, items[-1:].expand(missing, *items.shape[1:])])


def in_fixed_batches(function: Callable[[torch.Tensor], torch.Tensor], items: torch.Tensor,
                     size: int) -> torch.Tensor:
    """``function`` over ``items`` in batches of exactly ``size`` rows (the last one padded), the
    results of the padding dropped."""
    return torch.cat([function(padded(part, size))[:part.shape[0]] for part in items.split(size)])
