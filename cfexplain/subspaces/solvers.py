"""Subspace solvers: from criterion metrics to an orthonormal basis of an interpretable subspace.

A criterion's metric ``M = E[JᵀJ]`` (``D × D``, positive semi-definite) is held as a factor ``F``
(``r × D``, ``M = FᵀF``), as the Jacobian engine produces it; all solvers work on factors with
thin SVDs, so no ``D × D`` matrix is formed (StyleSpace has ``D ≈ 9000``). Three solvers:

* :func:`solve_projected` (ICE's method, "early projection"): the approximate null space of each
  keep criterion, ``N_k = span{v : λ(v) < ρ_k · λ_max(M_k)}``, intersected; then the principal
  directions of the target inside it, kept while ``σ > ρ_t · σ_max``. The intersection is built by
  sequential projection: the keep criteria's active spaces ``N_k^⊥`` are orthonormalised one after
  the other into one basis ``Q``, and ``∩ N_k = Q^⊥``; the target's directions inside it are the
  right singular vectors of ``F_t (I − QQᵀ)``.
* :func:`solve_late_projected`: the target's principal directions computed without the
  constraint, then projected onto ``∩ N_k`` and re-orthonormalised. (The reference code projects
  with only the last keep criterion's null space and normalises the wrong axis; both are fixed.)
* :func:`solve_soft`: the generalized eigenproblem ``M_t v = σ (Σ_k M_k/‖M_k‖ + εI) v``: a soft
  trade-off instead of a hard constraint (forms ``D × D`` matrices).
* :func:`solve_contrast`: the generalized eigenproblem of the target against the keep criteria,
  every metric measured against its own random-direction level: the directions whose target
  change, relative to their keep change, most exceeds what random directions achieve (the
  quantity :mod:`cfexplain.subspaces.specificity` measures on held-out faces).

All return a :class:`SolverResult`: an orthonormal basis ``(D, k)`` and the target sensitivity
``σ`` (the eigenvalue of ``M_t`` along each direction), in descending order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..errors import InputError

__all__ = ["SolverResult", "active_space", "factor_from_matrix", "solve_contrast", "solve_projected",
           "solve_late_projected", "solve_soft", "SOLVERS"]


@dataclass
class SolverResult:
    """An orthonormal basis ``(D, k)`` and the target's sensitivity along each column."""

    basis: np.ndarray
    eigenvalues: np.ndarray


def factor_from_matrix(metric: np.ndarray) -> np.ndarray:
    """A factor ``F`` with ``FᵀF = metric`` for a symmetric PSD matrix (negative noise clipped)."""
    metric = np.asarray(metric, dtype=np.float64)
    values, vectors = np.linalg.eigh((metric + metric.T) / 2)
    values = np.clip(values, 0, None)
    keep = values > 0
    return np.sqrt(values[keep])[:, None] * vectors[:, keep].T


def _check_factor(factor: np.ndarray, dim: int | None, name: str) -> np.ndarray:
    factor = np.asarray(factor, dtype=np.float64)
    if factor.ndim != 2 or (dim is not None and factor.shape[1] != dim):
        raise InputError(f"{name} must be a (r, D) factor{f' with D = {dim}' if dim else ''}, got shape {factor.shape}")
    if not np.isfinite(factor).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return factor


def _right_singular(factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors ``(D, ·)`` of ``FᵀF`` from a thin SVD of F."""
    if factor.shape[0] == 0:
        return np.zeros(0), np.zeros((factor.shape[1], 0))
    _, s, vt = np.linalg.svd(factor, full_matrices=False)
    return s**2, vt.T


def active_space(factor: np.ndarray, ratio: float) -> np.ndarray:
    """Orthonormal eigenvectors of ``M = FᵀF`` with ``λ ≥ ratio · λ_max`` (the criterion's
    *active* space; its orthogonal complement is the approximate null space)."""
    values, vectors = _right_singular(_check_factor(factor, None, "metric factor"))
    if len(values) == 0 or values[0] <= 0:
        return vectors[:, :0]
    return vectors[:, values >= ratio * values[0]]


def _orthonormal_union(spaces: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """An orthonormal basis of the sum of the column spaces, by sequential projection."""
    q = np.zeros((dim, 0))
    for space in spaces:
        if space.shape[1] == 0:
            continue
        rest = space - q @ (q.T @ space)
        u, s, _ = np.linalg.svd(rest, full_matrices=False)
        q = np.concatenate([q, u[:, s > 1e-8]], axis=1)
    return q


def _keep_union(keep: Sequence[np.ndarray], ratios: Sequence[float], dim: int) -> np.ndarray:
    if len(keep) != len(ratios):
        raise InputError(f"{len(keep)} keep metrics but {len(ratios)} keep ratios")
    factors = [_check_factor(f, dim, "keep metric factor") for f in keep]
    return _orthonormal_union([active_space(f, r) for f, r in zip(factors, ratios)], dim)


def _select(values: np.ndarray, vectors: np.ndarray, ratio: float) -> SolverResult:
    if len(values) == 0 or values[0] <= 0:
        return SolverResult(vectors[:, :0], values[:0])
    keep = values > ratio * values[0]
    return SolverResult(vectors[:, keep], values[keep])


def _truncate(result: SolverResult, max_directions: int | None) -> SolverResult:
    if max_directions is None:
        return result
    return SolverResult(result.basis[:, :max_directions], result.eigenvalues[:max_directions])


def solve_projected(target: np.ndarray, keep: Sequence[np.ndarray], *, target_ratio: float,
                    keep_ratios: Sequence[float], max_directions: int | None = None) -> SolverResult:
    """Principal target directions inside the intersected approximate null spaces (ICE); at most
    ``max_directions`` (the most sensitive)."""
    target = _check_factor(target, None, "target metric factor")
    q = _keep_union(keep, keep_ratios, target.shape[1])
    restricted = target - (target @ q) @ q.T  # F_t (I − QQᵀ): its right singular vectors lie in Q^⊥
    values, vectors = _right_singular(restricted)
    return _truncate(_select(values, vectors, target_ratio), max_directions)


def solve_late_projected(target: np.ndarray, keep: Sequence[np.ndarray], *, target_ratio: float,
                         keep_ratios: Sequence[float], max_directions: int | None = None) -> SolverResult:
    """Unconstrained principal target directions, projected onto ``∩ N_k`` and re-orthonormalised.

    Directions whose projection keeps less than 1 % of their length are dropped (they lay almost
    entirely in the keep criteria's active spaces); the rest are ordered by their sensitivity."""
    target = _check_factor(target, None, "target metric factor")
    dim = target.shape[1]
    top = _select(*_right_singular(target), target_ratio)
    q = _keep_union(keep, keep_ratios, dim)
    projected = top.basis - q @ (q.T @ top.basis)
    kept = np.linalg.norm(projected, axis=0) > 1e-2
    if not kept.any():
        return SolverResult(np.zeros((dim, 0)), np.zeros(0))
    basis = _orthonormal_union([projected[:, kept]], dim)  # rank-revealing: projections may be dependent
    sensitivity = np.square(target @ basis).sum(axis=0)
    order = np.argsort(sensitivity)[::-1]
    return _truncate(SolverResult(basis[:, order], sensitivity[order]), max_directions)


def solve_soft(target: np.ndarray, keep: Sequence[np.ndarray], *, target_ratio: float,
               keep_ratios: Sequence[float] | None = None, epsilon: float = 1e-3,
               max_directions: int | None = None) -> SolverResult:
    """Generalized eigenvectors of ``M_t v = σ (Σ_k M_k / ‖M_k‖ + ε I) v`` with ``σ > ρ_t σ_max``,
    orthonormalised (the span is what matters), ordered by their target sensitivity.
    ``keep_ratios`` are not used: the trade-off is soft; ``ε`` (relative to the unit-norm keep
    metrics) regularises the directions no keep criterion constrains."""
    target = _check_factor(target, None, "target metric factor")
    dim = target.shape[1]
    penalty = np.eye(dim) * epsilon
    for factor in keep:
        factor = _check_factor(factor, dim, "keep metric factor")
        metric = factor.T @ factor
        norm = np.linalg.norm(factor, 2) ** 2 if factor.size else 0.0
        if norm > 0:
            penalty += metric / norm
    values, vectors = scipy.linalg.eigh(target.T @ target, penalty)
    order = np.argsort(values)[::-1]
    top = _select(values[order], vectors[:, order], target_ratio)
    if top.basis.shape[1] == 0:
        return top
    basis = _orthonormal_union([top.basis], dim)
    sensitivity = np.square(target @ basis).sum(axis=0)
    order = np.argsort(sensitivity)[::-1]
    return _truncate(SolverResult(basis[:, order], sensitivity[order]), max_directions)


def _random_level(factor: np.ndarray) -> float:
    """``tr(M) / D``: the mean squared change a random unit direction causes (M's mean eigenvalue)."""
    return float(np.square(factor).sum()) / factor.shape[1]


def solve_contrast(target: np.ndarray, keep: Sequence[np.ndarray], *, target_ratio: float,
                   keep_ratios: Sequence[float] | None = None, epsilon: float = 0.1,
                   max_directions: int | None = None) -> SolverResult:
    """Directions that move the target most *relative to the keep criteria*, each criterion measured
    against what a random direction does to it.

    With every metric divided by its random-direction level (``M / (tr M / D)``, so a random unit
    direction scores 1 on each), the generalized eigenproblem
    ``Â_t v = λ (mean_k Â_k + ε I) v`` has ``λ(v)`` ≈ the squared specificity of ``v``
    (:mod:`cfexplain.subspaces.specificity`): its target change over its keep change, both
    relative to random. Directions with ``λ > ρ_t · λ_max`` are kept, orthonormalised, and ordered
    by their target sensitivity (at most ``max_directions``, the highest ``λ`` first). ``ε`` (in units of the random level) keeps directions that move
    no keep criterion from scoring on the target's noise alone.

    Works on factors: ``(mean_k Â_k + εI)^{-1/2}`` is applied through a thin SVD of the stacked
    keep factors, so no ``D × D`` matrix is formed. ``keep_ratios`` are not used (the trade-off is
    measured, not thresholded).
    """
    target = _check_factor(target, None, "target metric factor")
    dim = target.shape[1]
    if epsilon <= 0:
        raise InputError(f"epsilon must be positive, got {epsilon}")
    level = _random_level(target)
    if level <= 0:
        return SolverResult(np.zeros((dim, 0)), np.zeros(0))
    scaled_target = target / np.sqrt(level)
    factors = [_check_factor(f, dim, "keep metric factor") for f in keep]
    factors = [f / np.sqrt(_random_level(f) * len(factors)) for f in factors if f.size and _random_level(f) > 0]
    if factors:
        _, s, vt = np.linalg.svd(np.concatenate(factors, axis=0), full_matrices=False)
        vt = vt[s > 1e-12 * s[0]] if len(s) else vt[:0]
        s = s[: vt.shape[0]]
    else:
        s, vt = np.zeros(0), np.zeros((0, dim))
    inverse_root = 1 / np.sqrt(s**2 + epsilon)  # (B + εI)^{-1/2} = Vᵀ diag(…) V + ε^{-1/2} (I − VᵀV)

    def whiten(rows: np.ndarray) -> np.ndarray:
        inside = rows @ vt.T
        return (inside * inverse_root) @ vt + (rows - inside @ vt) / np.sqrt(epsilon)

    _, sigma, yt = np.linalg.svd(whiten(scaled_target), full_matrices=False)
    contrast = sigma**2
    if len(contrast) == 0 or contrast[0] <= 0:
        return SolverResult(np.zeros((dim, 0)), np.zeros(0))
    chosen = yt[contrast > target_ratio * contrast[0]][:max_directions]
    directions = whiten(chosen).T  # generalized eigenvectors v = (B + εI)^{-1/2} y
    basis = _orthonormal_union([directions / np.linalg.norm(directions, axis=0)], dim)
    sensitivity = np.square(target @ basis).sum(axis=0)
    order = np.argsort(sensitivity)[::-1]
    return SolverResult(basis[:, order], sensitivity[order])


SOLVERS = {"projected": solve_projected, "late": solve_late_projected, "soft": solve_soft, "contrast": solve_contrast}
"""Solver name → function, as accepted by :class:`cfexplain.Semantic`."""
