"""The model-randomisation check (Adebayo et al., 2018): an explanation that measures the model must
change when the model's weights are re-drawn."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ..audit import audit
from ..classifiers import Classifier
from ..generators.base import Generator, make_rng
from ..subspaces.core import SubspaceSet
from .results import RandomizationCheck

__all__ = ["randomize_weights", "randomization_check"]


def randomize_weights(classifier: Classifier, *, seed: int = 0) -> Classifier:
    """A copy of ``classifier`` whose weights are re-drawn at random (each tensor with its own mean
    and standard deviation; BatchNorm running statistics are kept)."""
    clone = copy.deepcopy(classifier)
    rng = make_rng(seed)
    with torch.no_grad():
        for name, tensor in list(clone.named_parameters()) + list(clone.named_buffers()):
            if not tensor.is_floating_point() or "running_" in name or tensor.numel() < 2:
                continue
            noise = torch.randn(tensor.shape, generator=rng, dtype=torch.float64).to(tensor)
            tensor.copy_(tensor.mean() + tensor.std() * noise)
    clone.name = f"{classifier.name} (randomised weights)"
    return clone


def randomization_check(generator: Generator, classifier: Classifier, subspaces: SubspaceSet, *, n: int = 16,
                        seed: int = 0, **audit_options: Any) -> RandomizationCheck:
    """Audit the classifier and a copy with re-drawn weights; the explanation should change.

    Returns:
        A :class:`RandomizationCheck`: ``changed`` when the rankings differ or some semantic's flip
        rate moves by more than 0.2.
    """
    options = {"joint": False, "attribution": False, "controls": 0, "progress": False, **audit_options}
    original = audit(generator, classifier, subspaces, n, seed=seed, **options)
    randomized = audit(generator, randomize_weights(classifier, seed=seed), subspaces, n, seed=seed, **options)
    a, b = original.table.set_index("semantic"), randomized.table.set_index("semantic")
    names = list(a.index)
    ranks_a, ranks_b = a.loc[names, "rank"].to_numpy(float), b.loc[names, "rank"].to_numpy(float)
    correlation = float(np.corrcoef(ranks_a, ranks_b)[0, 1]) if len(names) > 2 else float("nan")
    change = float(np.abs(a.loc[names, "flip_rate"].to_numpy() - b.loc[names, "flip_rate"].to_numpy()).max())
    return RandomizationCheck(changed=original.ranking() != randomized.ranking() or change > 0.2,
                              rank_correlation=correlation, flip_rate_change=change, original=original.ranking(),
                              randomized=randomized.ranking())
