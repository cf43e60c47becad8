"""Interpretable subspaces: semantics, the solvers, learning, and saved subspace sets."""

from .compare import principal_cosines, subspace_agreement
from .core import FORMAT_VERSION, Semantic, Subspace, SubspaceSet
from .learn import learn_subspaces
from .solvers import SOLVERS, SolverResult, active_space, factor_from_matrix, solve_late_projected, solve_projected, solve_soft

__all__ = [
    "FORMAT_VERSION",
    "SOLVERS",
    "Semantic",
    "SolverResult",
    "Subspace",
    "SubspaceSet",
    "active_space",
    "factor_from_matrix",
    "learn_subspaces",
    "principal_cosines",
    "solve_late_projected",
    "solve_projected",
    "solve_soft",
    "subspace_agreement",
]
