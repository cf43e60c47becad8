"""Describing latent directions by the face criteria they move."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..criteria.base import Criterion
from ..errors import InputError
from ..generators.base import Generator
from ..jacobian import estimate_metrics

__all__ = ["DirectionDescription", "describe_directions"]


@dataclass
class DirectionDescription:
    """Which criteria a direction moves.

    Attributes:
        text: e.g. ``"mostly lip colour, little else"``.
        relative: per criterion, the direction's effect relative to an average direction
            (``vᵀ M_c v`` divided by ``trace(M_c) / D``: 1 = as much as a random direction).
        shares: ``relative`` normalised to sum to 1.
    """

    text: str
    relative: dict[str, float]
    shares: dict[str, float]


def _text(shares: dict[str, float]) -> str:
    ranked = sorted(shares.items(), key=lambda kv: kv[1], reverse=True)
    (first, a), (second, b) = ranked[0], ranked[1] if len(ranked) > 1 else ("", 0.0)
    if a >= 0.6 and b < 0.2:
        return f"mostly {first}, little else"
    if a + b >= 0.7:
        return f"{first} and {second}"
    return "diffuse: " + ", ".join(name for name, _ in ranked[:3])


def describe_directions(generator: Generator, directions: torch.Tensor, criteria: Mapping[str, Criterion], *,
                        space: str, n_samples: int = 4, seed: int = 0, **engine_options) -> list[DirectionDescription]:
    """Describe each column of ``directions`` (``(D, K)``) by the criteria it moves most.

    Each criterion's metric ``M_c`` is estimated once on ``n_samples`` faces (the Jacobian engine);
    a direction's effect on a criterion is ``vᵀ M_c v`` relative to an average direction
    (``trace(M_c) / D``), so criteria of any scale compare. The text says what dominates:
    ``"mostly X, little else"`` (one criterion ≥ 60 % of the shares, the next < 20 %), ``"X and Y"``
    (two ≥ 70 % together) or ``"diffuse: X, Y, Z"``.
    """
    if len(criteria) < 1:
        raise InputError("describing directions needs at least one criterion")
    directions = torch.as_tensor(directions).double().cpu().numpy()
    dim = generator.latent_dim(space)
    if directions.ndim != 2 or directions.shape[0] != dim:
        raise InputError(f"directions must be (D, K) with D = {dim}, got {directions.shape}")
    names = list(criteria)
    latents = generator.sample(n_samples, space=space, seed=seed)
    estimate = estimate_metrics(generator, list(criteria.values()), latents, space=space, seed=seed, **engine_options)
    unit = directions / np.linalg.norm(directions, axis=0, keepdims=True)
    effects = np.stack([np.square(f @ unit).sum(axis=0) / max(np.square(f).sum() / dim, 1e-300)
                        for f in estimate.factors])  # (criteria, K)
    descriptions = []
    for k in range(unit.shape[1]):
        relative = {name: float(effects[i, k]) for i, name in enumerate(names)}
        total = sum(relative.values()) or 1.0
        shares = {name: value / total for name, value in relative.items()}
        descriptions.append(DirectionDescription(_text(shares), relative, shares))
    return descriptions
