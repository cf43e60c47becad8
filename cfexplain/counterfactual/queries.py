"""Counterfactual search and attribution from classifier queries only (black-box classifiers).

A learned subspace has a few directions (about 8), which is where gradient-free search is cheap:

* :func:`finite_difference_search`: the Newton (DeepFool) steps of
  :func:`~cfexplain.counterfactual.search.newton_search`, with the gradient of the decision gap
  in the subspace estimated by forward differences, one query per direction. A step costs one
  query for the new point and ``k`` for the next gradient; an item stops when its next step
  would not fit in its query budget (what the minimal-edit root search needs is held back).
* :func:`shapley_attribution`: the joint counterfactual's change of the decision gap shared among
  the semantics by their Shapley values, exact over all ``2^S`` subsets of semantics up to
  :data:`EXACT_SHAPLEY_MAX` semantics, estimated from random orders above.

Every query is one image through the classifier; the functions count them per item.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch

from .search import BackpropGradients, SearchChunk, SearchEnd, newton_search

__all__ = ["EXACT_SHAPLEY_MAX", "FINITE_DIFFERENCE_STEP", "SAMPLED_SHAPLEY_ORDERS", "FiniteDifferences",
           "finite_difference_search", "shapley_attribution"]

FINITE_DIFFERENCE_STEP = 0.05
"""The forward-difference step, as a fraction of the budget (an RMS image change of 0.01 at the
default image budget: about 1.3 grey levels, so that classifiers fed 8-bit images see it)."""

EXACT_SHAPLEY_MAX = 8
"""Up to this many semantics the Shapley values are exact (``2^S − 1`` queries per face: 255 at 8)."""

SAMPLED_SHAPLEY_ORDERS = 32
"""Above :data:`EXACT_SHAPLEY_MAX` semantics, the Shapley values are averaged over this many random
orders of the semantics (``S`` queries each)."""


def _widths(chunk: SearchChunk) -> torch.Tensor:
    """``(n,)`` each item's number of directions (its subspace's; the bases are zero-padded)."""
    per_subspace = (chunk.problem.bases.abs().sum(dim=1) > 0).sum(dim=1)
    return per_subspace[chunk.subspaces]


def _gaps(chunk: SearchChunk, alpha: torch.Tensor, where: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Decision gap, logits and image change at ``alpha`` for the chunk positions ``where``, a batch at a time."""
    gaps, logits, pixels = [], [], []
    for part, a in zip(where.split(batch_size), alpha.split(batch_size)):
        part_logits, part_pixels = chunk.probe(a, part)
        gaps.append(chunk.gap(part_logits, part))
        logits.append(part_logits)
        pixels.append(part_pixels)
    return torch.cat(gaps), torch.cat(logits), torch.cat(pixels)


class FiniteDifferences(BackpropGradients):
    """The decision gap's gradient in each item's coefficients by forward differences, one query
    per direction of the item's subspace (padding directions stay 0), with a budget of
    ``max_queries`` per item of which ``reserve`` are held back (for the root search).

    Args:
        chunk: the items.
        step: the difference step, in the edit unit.
        max_queries, reserve: the per-item query budget and what is held back.
        batch_size: images per classifier pass.
    """

    def __init__(self, chunk: SearchChunk, *, step: float, max_queries: int, reserve: int, batch_size: int) -> None:
        self.step, self.batch_size = step, batch_size
        self.spendable = max_queries - reserve
        self.widths = _widths(chunk)
        self.queries = torch.zeros(len(chunk), dtype=torch.long, device=chunk.problem.codes.device)

    def start(self, chunk: SearchChunk, gap: torch.Tensor) -> torch.Tensor:
        n, k = len(chunk), chunk.problem.bases.shape[2]
        grad = torch.zeros(n, k, device=gap.device, dtype=chunk.problem.codes.dtype)
        affordable = (self.widths <= self.spendable).nonzero()[:, 0]
        grad[affordable] = self.at(chunk, torch.zeros_like(grad[affordable]), gap[affordable], affordable)
        return grad

    def at(self, chunk: SearchChunk, alpha: torch.Tensor, gap: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        k = alpha.shape[1]
        grad = torch.zeros_like(alpha)
        item, direction = (pairs.reshape(-1) for pairs in torch.meshgrid(
            torch.arange(len(idx), device=alpha.device), torch.arange(k, device=alpha.device), indexing="ij"))
        used = direction < self.widths[idx][item]
        item, direction = item[used], direction[used]
        self.queries[idx] += self.widths[idx]
        if len(item) == 0:
            return grad
        points = alpha[item].clone()
        points[torch.arange(len(item)), direction] += self.step
        moved, _, _ = _gaps(chunk, points, idx[item], self.batch_size)
        grad[item, direction] = (moved - gap[item]) / self.step
        return grad

    def probe(self, chunk: SearchChunk, alpha: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.queries[idx] += 1
        _, logits, pixels = _gaps(chunk, alpha, idx, self.batch_size)
        return logits, pixels

    def exhausted(self, idx: torch.Tensor) -> torch.Tensor:
        """Items that cannot afford one more point and the gradient there."""
        return self.queries[idx] + self.widths[idx] + 1 > self.spendable

    def spent(self) -> torch.Tensor:
        return self.queries.cpu()


def finite_difference_search(chunk: SearchChunk, *, budget: float, margin: float, steps: int, patience: int,
                             max_queries: int, reserve: int, batch_size: int,
                             step: float | None = None) -> SearchEnd:
    """:func:`~cfexplain.counterfactual.search.newton_search` with :class:`FiniteDifferences`
    gradients (module docstring): a budget of ``max_queries`` queries per item, ``reserve`` held
    back for the root search, differences of ``step`` (default :data:`FINITE_DIFFERENCE_STEP` ×
    ``budget``). The end's ``queries`` count the queries spent."""
    gradients = FiniteDifferences(chunk, step=FINITE_DIFFERENCE_STEP * budget if step is None else step,
                                  max_queries=max_queries, reserve=reserve, batch_size=batch_size)
    return newton_search(chunk, budget=budget, margin=margin, steps=steps, patience=patience, gradients=gradients)


def _shapley_weights(count: int) -> list[float]:
    """The weight of a coalition of size ``m`` (without the player) in a Shapley value: ``m! (S − m − 1)! / S!``."""
    return [math.factorial(m) * math.factorial(count - m - 1) / math.factorial(count) for m in range(count)]


def shapley_attribution(chunk: SearchChunk, alpha: torch.Tensor, groups: torch.Tensor, count: int, batch_size: int,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Shapley values of the semantics for each face's joint edit ``alpha`` (stacked
    coefficients, ``groups`` naming each one's semantic): the value of a set of semantics is the
    change of the decision gap when only their coefficients are applied.

    Returns:
        The change of the gap with every semantic applied, the Shapley values ``(n, count)``, the
        change minus their sum (0 up to rounding when exact: Shapley values are efficient), and
        the queries per face.
    """
    n, device = len(alpha), alpha.device
    base = chunk.gap(chunk.problem.original_logits[chunk.faces])
    members = torch.stack([groups == g for g in range(count)])  # (count, K)
    exact = count <= EXACT_SHAPLEY_MAX
    if exact:
        coalitions = [frozenset(c) for size in range(1, count + 1) for c in combinations(range(count), size)]
    else:
        generator = torch.Generator().manual_seed(seed)
        orders = [torch.randperm(count, generator=generator).tolist() for _ in range(SAMPLED_SHAPLEY_ORDERS)]
        coalitions = list(dict.fromkeys(frozenset(order[:m]) for order in orders for m in range(1, count + 1)))
    value = {frozenset(): torch.zeros(n, device=device, dtype=alpha.dtype)}
    everyone = torch.arange(n, device=device)
    per_pass = max(1, batch_size // max(n, 1))  # coalitions whose images fill one batch
    for part in range(0, len(coalitions), per_pass):
        batch = coalitions[part:part + per_pass]
        masks = torch.stack([members[sorted(c)].any(dim=0) for c in batch]).to(alpha.dtype)  # (b, K)
        points = (alpha[None] * masks[:, None]).reshape(-1, alpha.shape[1])
        where = everyone.repeat(len(batch))
        gaps, _, _ = _gaps(chunk, points, where, batch_size)
        for c, gap in zip(batch, gaps.reshape(len(batch), n)):
            value[c] = gap - base
    full = value[frozenset(range(count))]
    shares = torch.zeros(n, count, device=device, dtype=alpha.dtype)
    if exact:
        weights = _shapley_weights(count)
        for c in value:
            for player in set(range(count)) - c:
                shares[:, player] += weights[len(c)] * (value[c | {player}] - value[c])
    else:
        for order in orders:
            for m, player in enumerate(order):
                shares[:, player] += value[frozenset(order[:m + 1])] - value[frozenset(order[:m])]
        shares /= len(orders)
    queries = torch.full((n,), len(coalitions), dtype=torch.long)
    return full, shares, full - shares.sum(dim=1), queries
