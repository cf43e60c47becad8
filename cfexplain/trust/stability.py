"""The stability check: subspaces learned from disjoint face samples must agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..generators.base import Generator
from ..subspaces.compare import subspace_agreement
from ..subspaces.core import Semantic
from ..subspaces.learn import learn_subspaces
from .results import StabilityCheck

__all__ = ["stability_check"]


def stability_check(generator: Generator, semantics: Sequence[Semantic], *, space: str, n_samples: int = 8,
                    seeds: tuple[int, int] = (0, 1), **learn_options: Any) -> StabilityCheck:
    """Learn the subspaces twice from disjoint face samples (different seeds) and compare: a
    :class:`StabilityCheck` with the mean squared cosine of the principal angles per semantic
    (1 = identical). The specificity measurement is skipped (it does not enter the comparison)."""
    options = {"specificity_samples": 0, "progress": False, **learn_options}
    first, second = (learn_subspaces(generator, semantics, space=space, n_samples=n_samples, seed=s, **options)
                     for s in seeds)
    return StabilityCheck({name: subspace_agreement(first[name].basis, second[name].basis) for name in first},
                          tuple(seeds))
