"""``learn_subspaces``: sample faces, estimate the criteria metrics once, solve every semantic."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .._defaults import LEARNING_FACES, LEARNING_SEED
from .._version import software_provenance
from ..errors import InputError
from ..generators.base import Generator
from ..distributed import ranks_for
from ..jacobian import MetricEstimate, combine_estimates, estimate_metrics
from .core import Semantic, Subspace, SubspaceSet
from .solvers import SOLVERS
from .specificity import LowSpecificityWarning, measure_specificity

__all__ = ["learn_subspaces"]


def learn_subspaces(
    generator: Generator,
    semantics: Sequence[Semantic],
    *,
    space: str = "s",
    n_samples: int = LEARNING_FACES,
    seed: int = LEARNING_SEED,
    truncation: float = 1.0,
    method: str = "auto",
    batch_size: int = 2,
    resolution: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    specificity_samples: int = 8,
    progress: bool = True,
    distributed: bool = False,
    **engine_options: Any,
) -> SubspaceSet:
    """Learn one subspace per semantic.

    ``n_samples`` latent codes are drawn (``seed``, ``truncation``) in ``space``; each distinct
    criterion's metric ``E[JᵀJ]`` is estimated once (criteria shared by several semantics are
    computed once) by :func:`cfexplain.jacobian.estimate_metrics`; each semantic is then solved
    with its solver.

    Args:
        generator: any :class:`~cfexplain.generators.Generator`.
        semantics: what to learn.
        space: latent space of the subspaces (``"s"``, ``"w+"``, ``"w"``, ``"z"`` for StyleGAN2;
            ``"z"`` for wrapped generators).
        n_samples: faces the metrics are averaged over.
        seed, truncation: how the faces are drawn.
        method: Jacobian method (``"auto"``, ``"forward"``, ``"reverse"``, ``"randomized"``).
        batch_size: faces per batch.
        resolution: stop synthesis early at this resolution (faster when criteria work at ≤ 256²).
        checkpoint_dir: save the metric estimation after each batch and resume from it.
        specificity_samples: faces, apart from the learning ones, on which each subspace's
            specificity against random directions is measured
            (:func:`~cfexplain.subspaces.specificity.measure_specificity`); 0 skips it. The result
            goes into each subspace's ``provenance["specificity"]``
            (:meth:`SubspaceSet.specificity_table`), and a :class:`LowSpecificityWarning` names
            every semantic that is not clearly more specific than random directions.
        progress: show progress bars.
        distributed: share the work among the processes of the initialized ``torch.distributed``
            process group (:mod:`cfexplain.distributed`): each estimates the metrics on its block
            of whole batches of the samples (and measures specificity on its share of those
            faces), and every rank returns the same set, equal to a single-process run's within
            floating-point tolerance. With ``checkpoint_dir``, each rank checkpoints its own block.
        engine_options: further options of :func:`~cfexplain.jacobian.estimate_metrics`
            (``chunk_size``, ``block_size``, ``max_rank``, ``memory_limit_mb``).

    Returns:
        A :class:`SubspaceSet` with provenance (generator, criteria, thresholds, samples, seed,
        methods, generator passes, versions).
    """
    if not semantics:
        raise InputError("no semantics to learn")
    names = [s.name for s in semantics]
    if len(set(names)) != len(names):
        raise InputError(f"semantic names must be unique, got {names}")
    generator.check_space(space)
    for name, value, minimum in (("n_samples", n_samples, 1), ("specificity_samples", specificity_samples, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    criteria, tolerances = _criteria_and_tolerances(semantics)
    ranks = ranks_for(distributed)
    mine = ranks.span(n_samples, block=batch_size)
    shard = None
    if mine:  # a rank beyond the last batch has nothing to estimate
        latents = generator.sample(len(mine), space=space, seed=seed, truncation=truncation, start=mine.start)
        shard = estimate_metrics(
            generator, criteria, latents, space=space, method=method, resolution=resolution, batch_size=batch_size,
            tolerances=tolerances, seed=seed, checkpoint_dir=checkpoint_dir, progress=progress and ranks.is_main,
            sample_offset=mine.start, **engine_options)
    estimate = combine_estimates([part for part in ranks.all_gather(shard) if part is not None])
    subspace_set = SubspaceSet(_solve(semantics, criteria, estimate, space, generator.latent_shape(space)))
    if specificity_samples:
        _measure_specificity(generator, semantics, subspace_set, specificity_samples, seed + 10007, resolution,
                             progress and ranks.is_main, distributed)
    subspace_set.provenance.update(software_provenance(
        generator=dict(generator.provenance), space=space, n_samples=n_samples, seed=seed, truncation=truncation,
        resolution=resolution, method=method, generator_passes=estimate.passes, seconds=round(estimate.seconds, 3),
        criteria=[{"name": c.name, "method": m, "outputs": int(size)}
                  for c, m, size in zip(criteria, estimate.methods, estimate.output_sizes)]))
    return subspace_set


def _criteria_and_tolerances(semantics: Sequence[Semantic]) -> tuple[list, list[float]]:
    """The distinct criteria of the semantics (shared ones once) and the randomized method's
    tolerance of each: 1 % of the target ratio for targets, 10 % of the keep ratio for keep
    criteria, the smallest where a criterion serves several roles."""
    criteria: list = []
    tolerance: dict[int, float] = {}
    for semantic in semantics:
        roles = [(semantic.target, semantic.target_ratio * 1e-2)] + [
            (c, r * 0.1) for c, r in zip(semantic.keep, semantic.keep_ratios)]
        for criterion, tol in roles:
            if id(criterion) not in tolerance:
                criteria.append(criterion)
                tolerance[id(criterion)] = tol
            tolerance[id(criterion)] = min(tolerance[id(criterion)], tol)
    return criteria, [tolerance[id(c)] for c in criteria]


def _solve(semantics: Sequence[Semantic], criteria: list, estimate: MetricEstimate, space: str, shape: tuple[int, ...]) -> list[Subspace]:
    """One subspace per semantic, from the estimated metric factors, with its solver."""
    factor_of = {id(c): f for c, f in zip(criteria, estimate.factors)}
    method_of = {id(c): m for c, m in zip(criteria, estimate.methods)}
    subspaces = []
    for semantic in semantics:
        result = SOLVERS[semantic.solver](factor_of[id(semantic.target)], [factor_of[id(c)] for c in semantic.keep],
                                          target_ratio=semantic.target_ratio, keep_ratios=semantic.keep_ratios,
                                          max_directions=semantic.max_directions)
        provenance = {**semantic.describe(), "methods": {c.name: method_of[id(c)] for c in semantic.criteria}}
        subspaces.append(Subspace(semantic.name, torch.from_numpy(result.basis.copy()),
                                  torch.from_numpy(result.eigenvalues.copy()), space, shape, provenance))
    return subspaces


def _measure_specificity(generator: Generator, semantics: Sequence[Semantic], subspaces: SubspaceSet, samples: int,
                         seed: int, resolution: int | None, progress: bool, distributed: bool) -> None:
    """Record each subspace's specificity in its provenance; warn by name where it is low."""
    measured = measure_specificity(generator, semantics, subspaces, n_samples=samples, seed=seed,
                                   resolution=resolution, progress=progress, distributed=distributed)
    for name, result in measured.items():
        subspaces[name].provenance["specificity"] = result.to_dict()
        if result.low:
            warnings.warn(f"semantic {name!r} is not clearly more specific than random directions: "
                          f"{result.describe()}", LowSpecificityWarning, stacklevel=3)

