"""The stability check: subspaces learned from disjoint face samples must agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..generators.base import Generator
from ..subspaces.compare import subspace_agreement
from ..subspaces.core import Semantic
from ..subspaces.learn import learn_subspaces

__all__ = ["stability_check"]


def stability_check(generator: Generator, semantics: Sequence[Semantic], *, space: str, n_samples: int = 8,
                    seeds: tuple[int, int] = (0, 1), **learn_options: Any) -> dict[str, float]:
    """Learn the subspaces twice from disjoint face samples (different seeds) and compare:
    the mean squared cosine of the principal angles per semantic (1 = identical)."""
    first, second = (learn_subspaces(generator, semantics, space=space, n_samples=n_samples, seed=s, progress=False,
                                     **learn_options) for s in seeds)
    return {name: subspace_agreement(first[name].basis, second[name].basis) for name in first}
