"""Counterfactual search inside interpretable subspaces.

For a face ``u0``, a subspace with orthonormal basis ``V`` (``D × k``) and a classifier, find
coefficients ``α`` of ``u = u0 + V (σ ⊙ α)`` that reach a target decision. ``σ`` is the spread
(standard deviation) of the latent distribution along each basis vector, so ``‖α‖`` is an edit
size in standard deviations, comparable across semantics and latent spaces; the **edit budget** is
a bound on it.

Many faces × many subspaces are optimised at once, as one batch: each item has its own
coefficients and optimiser state. An item stops as soon as its decision has crossed (Newton) or
crossed over by the requested margin (Adam). Then a batched root search along each found path,
``u0 + t·V(σ⊙α)``, ``t ∈ [0, 1]`` (regula falsi, Illinois variant, bracketing the crossing like a
bisection but converging in a few steps; for Newton paths its first guess is the root of the
quadratic through the gap at both ends and its slope at ``t = 0``, known from the first step),
finds the **minimal edit**: where the path crosses the decision boundary. Its size is the
"distance to the decision boundary" along that semantic, comparable across semantics. An item
counts as flipped when its path crosses the boundary within the budget.

Optimisers: ``"newton"`` steps to where the linearised decision gap reaches twice the margin by
the smallest change of the coefficients (DeepFool's step, inside the subspace; the step is capped
at the budget and the coefficients are projected back onto the budget ball); most items flip in
one to three steps, and the first step's gradient is shared by all subspaces of a face (one
backward pass per face: ``∇_α gap = (Vσ)ᵀ ∇_u gap``). ``"adam"`` minimises a loss, ``"margin"``
(hinge on the decision gap) or ``"ce"`` (cross-entropy towards the target), plus ``β‖α‖²``.

Targets (:func:`resolve_target`): a class (index or label), ``"flip"`` (leave the current class),
or for sigmoid (multi-label) classifiers a head turning ``"on"``/``"off"``/``"flip"``.

Modules: :mod:`.targets` (what the decision should become, :func:`resolve_target`, and how far it
is from it, :func:`decision_gap`); :mod:`.explainer` (:class:`CounterfactualExplainer`: the
batched search and the minimal edit); :mod:`.result` (:class:`CounterfactualResult`: the table
and edits, saved and loaded).
"""

from .explainer import CounterfactualExplainer
from .result import RESULT_FORMAT_VERSION, CounterfactualResult
from .targets import TargetSpec, decision_gap, resolve_target
from .units import DEFAULT_BUDGETS, EDIT_UNITS, edit_basis, image_metric, latent_spread

__all__ = ["CounterfactualExplainer", "CounterfactualResult", "TargetSpec", "resolve_target", "decision_gap",
           "DEFAULT_BUDGETS", "EDIT_UNITS", "edit_basis", "image_metric", "latent_spread", "RESULT_FORMAT_VERSION"]
