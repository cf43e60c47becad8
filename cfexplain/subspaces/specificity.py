"""Specificity: does a learned subspace move its semantic more selectively than random directions do?

A subspace is only an explanation of "lip colour" if editing along it changes the lips' colour
and leaves the rest alone *more than an arbitrary edit would*. Large-effect directions move
everything; a subspace can look busy on its target criterion and still be no more specific than
noise. So every claim is measured against a control:

For faces ``u_i`` (drawn apart from the learning faces), a criterion ``c`` and an edit direction
``d`` scaled to one standard deviation of the latent distribution (:meth:`Generator.edit_scale`),
the first-order change is ``‖J_c(u_i) d‖²`` (one JVP per face and direction). Averaged over the
faces and the subspace's directions, and divided by the same average over random directions of
the space (a random orthonormal subspace of any dimension has the same expectation):

* ``target_gain`` = ``√(mean ‖ΔT‖²_subspace / mean ‖ΔT‖²_random)``: how much more the target moves
  per unit edit than under a random edit;
* ``keep_gains[k]``: the same for each keep criterion (1 = as much as a random edit, 0 = untouched);
* ``specificity`` = ``target_gain / √(mean_k keep_gains[k]²)``: how much more the target moves
  *relative to the keep criteria* than under random edits. 1 = no better than random;
* ``cross_gains[other]``: the gain of every other measured semantic's target along this subspace.
  The audit reads it: a subspace that moves another semantic's target as much as a random edit
  does cannot tell the two apart.

The 90 % interval comes from a bootstrap over the faces. A subspace whose interval reaches down to
``1`` is not distinguishable from random directions on these faces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..distributed import ranks_for
from ..errors import InputError
from ..generators.base import Generator, make_rng
from ..jacobian import directional_changes
from .core import Semantic, SubspaceSet

__all__ = ["SemanticSpecificity", "LowSpecificityWarning", "is_low_specificity", "measure_specificity",
           "SPECIFICITY_WARNING_BELOW"]

SPECIFICITY_WARNING_BELOW = 1.5
"""``learn_subspaces`` warns, by name, for semantics whose specificity is below this, or whose
bootstrap interval reaches 1 (no better than random)."""


def is_low_specificity(specificity: float, interval_low: float | None = None) -> bool:
    """Whether a subspace is not clearly more specific than random directions: ``specificity``
    below :data:`SPECIFICITY_WARNING_BELOW`, or (where known) its interval's lower end at or below 1.
    The one rule behind ``learn``'s warnings and the audit summary's caveat."""
    return specificity < SPECIFICITY_WARNING_BELOW or (interval_low is not None and interval_low <= 1.0)


class LowSpecificityWarning(UserWarning):
    """A learned subspace is not clearly more specific than random directions of its space."""


@dataclass(frozen=True)
class SemanticSpecificity:
    """The specificity of one learned subspace against random directions (module docstring).

    Attributes:
        name: the semantic.
        directions: the subspace's dimension.
        target_gain: RMS change of the target per unit edit, relative to random directions.
        keep_gains: the same for each keep criterion, by criterion name.
        specificity: ``target_gain / √(mean keep_gain²)``; 1 = no better than random.
        interval: bootstrap 90 % interval of ``specificity`` over the faces.
        samples: faces measured on; random_directions: random directions compared with.
        cross_gains: for each other semantic measured with it, the RMS change of *that* semantic's
            target per unit edit in this subspace, relative to random directions, with its
            bootstrap 90 % interval, as ``(gain, low, high)``: unless ``high`` is below 1, this
            subspace may move the other's target as much as a random edit does, so a decision that
            reacts to this subspace may follow the other semantic (empty when not measured).
    """

    name: str
    directions: int
    target_gain: float
    keep_gains: Mapping[str, float]
    specificity: float
    interval: tuple[float, float]
    samples: int
    random_directions: int
    cross_gains: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def better_than_random(self) -> bool:
        """Whether the whole interval lies above 1."""
        return self.interval[0] > 1.0

    @property
    def low(self) -> bool:
        """Whether the subspace is not clearly more specific than random directions: below
        :data:`SPECIFICITY_WARNING_BELOW`, or its interval reaches 1."""
        return is_low_specificity(self.specificity, self.interval[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        data = asdict(self)
        data["keep_gains"] = dict(self.keep_gains)
        data["cross_gains"] = {name: list(values) for name, values in self.cross_gains.items()}
        data["interval"] = list(self.interval)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SemanticSpecificity":
        """Rebuild from :meth:`to_dict`."""
        return cls(name=data["name"], directions=int(data["directions"]), target_gain=float(data["target_gain"]),
                   keep_gains={k: float(v) for k, v in data["keep_gains"].items()},
                   specificity=float(data["specificity"]), interval=tuple(float(v) for v in data["interval"]),
                   samples=int(data["samples"]), random_directions=int(data["random_directions"]),
                   cross_gains={k: tuple(float(x) for x in v) for k, v in data.get("cross_gains", {}).items()})

    def describe(self) -> str:
        """One line: the ratio, its interval and the control."""
        keep = ", ".join(f"{name} {gain:.2f}" for name, gain in self.keep_gains.items())
        return (f"{self.name}: specificity {self.specificity:.2f} (90 % {self.interval[0]:.2f}–{self.interval[1]:.2f}) "
                f"against random directions; target {self.target_gain:.2f}×, kept criteria {keep}")


def _distinct_criteria(semantics: Sequence[Semantic]) -> list:
    criteria: list = []
    for semantic in semantics:
        for criterion in semantic.criteria:
            if all(criterion is not other for other in criteria):
                criteria.append(criterion)
    return criteria


def _ratio(changes: torch.Tensor, columns: slice, random: slice, faces: np.ndarray) -> float:
    """Mean squared change along ``columns`` over the mean along the random columns, on ``faces``."""
    rows = changes[faces]
    return float(rows[:, columns].mean() / rows[:, random].mean().clamp_min(1e-300))


def measure_specificity(generator: Generator, semantics: Sequence[Semantic], subspaces: SubspaceSet, *,
                        n_samples: int = 8, seed: int = 10007, random_directions: int = 64,
                        resolution: int | None = None, bootstrap: int = 400, chunk_size: int = 16,
                        progress: bool = False, distributed: bool = False) -> dict[str, SemanticSpecificity]:
    """The specificity of every subspace learned for ``semantics`` (see the module docstring).

    Args:
        generator: the generator the subspaces were learned for.
        semantics: the semantics (their criteria are measured); those without a subspace in
            ``subspaces``, or whose subspace is empty, are skipped.
        subspaces: the learned subspaces.
        n_samples: faces measured on, drawn with ``seed`` (use faces apart from the learning ones).
        random_directions: random directions of the space to compare with.
        resolution: stop synthesis early (as when learning).
        bootstrap: bootstrap resamples of the faces for the interval.
        chunk_size: directions per vmapped pass.
        distributed: share the faces among the processes of the initialized process group
            (:mod:`cfexplain.distributed`); every rank returns the same result.

    Returns:
        ``{semantic name: SemanticSpecificity}``.
    """
    if n_samples < 2 or random_directions < 2:
        raise InputError("specificity needs n_samples ≥ 2 and random_directions ≥ 2")
    space = subspaces.space
    measured = [s for s in semantics if s.name in subspaces and subspaces[s.name].dim > 0]
    if not measured:
        return {}
    dim = generator.latent_dim(space)
    rng = make_rng(seed)
    random = torch.randn(dim, random_directions, generator=rng, dtype=torch.float64)
    random = (random / random.norm(dim=0, keepdim=True)).float()
    blocks = [subspaces[s.name].basis for s in measured] + [random]
    scales = [generator.edit_scale(space, block, seed=seed + 1) for block in blocks]
    directions = torch.cat([block * scale for block, scale in zip(blocks, scales)], dim=1)
    criteria = _distinct_criteria(measured)
    ranks = ranks_for(distributed)
    mine = ranks.span(n_samples)
    shard = None
    if mine:  # a rank beyond the last face has nothing to measure
        latents = generator.sample(len(mine), space=space, seed=seed, start=mine.start)
        shard = directional_changes(generator, criteria, latents, directions, space=space, resolution=resolution,
                                    chunk_size=chunk_size, progress=progress)
    gathered = [part for part in ranks.all_gather(shard) if part is not None]
    changes = [torch.cat(parts) for parts in zip(*gathered)]
    bounds = np.cumsum([0] + [b.shape[1] for b in blocks])
    return {semantic.name: _score(semantic, subspaces[semantic.name].dim, criteria, changes,
                                  slice(int(bounds[j]), int(bounds[j + 1])), slice(int(bounds[-2]), int(bounds[-1])),
                                  bootstrap, seed, [other for other in measured if other is not semantic])
            for j, semantic in enumerate(measured)}


def _score(semantic: Semantic, directions: int, criteria: list, changes: list[torch.Tensor], columns: slice,
           random: slice, bootstrap: int, seed: int, others: Sequence[Semantic]) -> SemanticSpecificity:
    """A semantic's specificity from the squared changes of its criteria along its columns and the
    random ones, with a bootstrap interval over the faces, and its gains on the ``others``' targets."""
    position = {id(c): i for i, c in enumerate(criteria)}
    faces = changes[0].shape[0]

    def gains(rows: np.ndarray) -> tuple[float, list[float]]:
        target = _ratio(changes[position[id(semantic.target)]], columns, random, rows)
        return target, [_ratio(changes[position[id(c)]], columns, random, rows) for c in semantic.keep]

    def specificity(target: float, keeps: list[float]) -> float:
        return math.sqrt(target / float(np.mean(keeps))) if keeps else math.sqrt(target)

    def cross(rows: np.ndarray) -> list[float]:
        return [math.sqrt(_ratio(changes[position[id(o.target)]], columns, random, rows)) for o in others]

    target, keeps = gains(np.arange(faces))
    resamples = np.random.default_rng(seed).integers(0, faces, size=(bootstrap, faces))
    draws = [specificity(*gains(rows)) for rows in resamples]
    low, high = np.quantile(draws, [0.05, 0.95]) if draws else (math.nan, math.nan)
    crossed = np.array([cross(rows) for rows in resamples]).reshape(len(resamples), len(others))
    bounds = np.quantile(crossed, [0.05, 0.95], axis=0) if len(resamples) else np.full((2, len(others)), math.nan)
    return SemanticSpecificity(name=semantic.name, directions=directions, target_gain=math.sqrt(target),
                               keep_gains={c.name: math.sqrt(k) for c, k in zip(semantic.keep, keeps)},
                               specificity=specificity(target, keeps), interval=(float(low), float(high)),
                               samples=faces, random_directions=random.stop - random.start,
                               cross_gains={o.name: (gain, float(bounds[0, j]), float(bounds[1, j]))
                                            for j, (o, gain) in enumerate(zip(others, cross(np.arange(faces))))})

