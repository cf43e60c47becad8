"""Interpretable subspaces: semantics, the solvers, learning, and saved subspace sets."""

from __future__ import annotations

from .._lazy import lazy_attributes

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

__getattr__, __dir__ = lazy_attributes(__name__, {
    "principal_cosines": ".compare",
    "subspace_agreement": ".compare",
    "FORMAT_VERSION": ".core",
    "Semantic": ".core",
    "Subspace": ".core",
    "SubspaceSet": ".core",
    "learn_subspaces": ".learn",
    "SOLVERS": ".solvers",
    "SolverResult": ".solvers",
    "active_space": ".solvers",
    "factor_from_matrix": ".solvers",
    "solve_contrast": ".solvers",
    "solve_late_projected": ".solvers",
    "solve_projected": ".solvers",
    "solve_soft": ".solvers",
    "LowSpecificityWarning": ".specificity",
    "SemanticSpecificity": ".specificity",
    "measure_specificity": ".specificity",
})
