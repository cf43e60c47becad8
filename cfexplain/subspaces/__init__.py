"""Interpretable subspaces: semantics, the solvers, learning, and saved subspace sets."""

from .compare import principal_cosines, subspace_agreement
from .core import FORMAT_VERSION, Semantic, Subspace, SubspaceSet
from .learn import learn_subspaces
from .solvers import (SOLVERS, SolverResult, active_space, factor_from_matrix, solve_contrast, solve_late_projected,
                      solve_projected, solve_soft)
from .specificity import LowSpecificityWarning, SemanticSpecificity, measure_specificity

__all__ = [
    "FORMAT_VERSION",
    "LowSpecificityWarning",
    "SOLVERS",
    "Semantic",
    "SemanticSpecificity",
    "SolverResult",
    "Subspace",
    "SubspaceSet",
    "active_space",
    "factor_from_matrix",
    "learn_subspaces",
    "measure_specificity",
    "principal_cosines",
    "solve_contrast",
    "solve_late_projected",
    "solve_projected",
    "solve_soft",
    "subspace_agreement",
]
