"""Comparing subspaces: principal angles."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ShapeError

__all__ = ["principal_cosines", "subspace_agreement"]


def _orthonormal(basis) -> np.ndarray:
    basis = basis.detach().cpu().double().numpy() if isinstance(basis, torch.Tensor) else np.asarray(basis, np.float64)
    if basis.ndim != 2:
        raise ShapeError(f"a subspace basis must be (D, k), got shape {basis.shape}")
    q, _ = np.linalg.qr(basis)
    return q


def principal_cosines(a, b) -> np.ndarray:
    """Cosines of the principal angles between the column spans of ``a`` and ``b`` (descending;
    ``min(k_a, k_b)`` of them)."""
    qa, qb = _orthonormal(a), _orthonormal(b)
    if qa.shape[0] != qb.shape[0]:
        raise ShapeError(f"bases live in different spaces: D = {qa.shape[0]} and {qb.shape[0]}")
    if qa.shape[1] == 0 or qb.shape[1] == 0:
        return np.zeros(0)
    return np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)


def subspace_agreement(a, b) -> float:
    """Mean squared cosine of the principal angles, over ``max(k_a, k_b)`` angles: 1 for identical
    spans, 0 for orthogonal ones; a dimension mismatch counts the unmatched directions as 0."""
    cosines = principal_cosines(a, b)
    k = max(np.shape(a)[1], np.shape(b)[1])
    return float(np.square(cosines).sum() / k) if k else 1.0
