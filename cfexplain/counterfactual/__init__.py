"""Counterfactual search inside interpretable subspaces.

For a face ``u0``, a subspace with orthonormal basis ``V`` (``D × k``) and a classifier, find
coefficients ``α`` of ``u = u0 + B α`` that reach a target decision. ``B`` is the basis scaled to
the edit unit (:mod:`.units`): by default whitened by the subspace's image metric, so that ``‖α‖``
is the RMS image change the edit causes and semantics are compared at equal image change (or, with
``unit="latent"``, ``B = V diag(σ)`` with ``σ`` the spread of the latent distribution along each
basis vector: edit sizes in standard deviations); the **edit budget** is a bound on ``‖α‖``.

Many faces × many subspaces are optimised at once, as one batch: each item has its own
coefficients and optimiser state. An item stops as soon as its decision has crossed (Newton) or
crossed over by the requested margin (Adam). Then a batched root search along each found path,
``u0 + t·Bα``, ``t ∈ [0, 1]`` (regula falsi, Illinois variant, bracketing the crossing like a
bisection but converging in a few steps; for Newton paths its first guess is the root of the
quadratic through the gap at both ends and its slope at ``t = 0``, known from the first step),
finds the **minimal edit**: where the path crosses the decision boundary. Its size is the
"distance to the decision boundary" along that semantic, comparable across semantics. An item
counts as flipped when its path crosses the boundary within the budget.

Optimisers: ``"newton"`` steps to where the linearised decision gap reaches twice the margin by
the smallest change of the coefficients (DeepFool's step, inside the subspace; the step is capped
at the budget and the coefficients are projected back onto the budget ball); most items flip in
one to three steps, and the first step's gradient is shared by all subspaces of a face (one
backward pass per face: ``∇_α gap = Bᵀ ∇_u gap``). ``"adam"`` minimises a loss, ``"margin"``
(hinge on the decision gap) or ``"ce"`` (cross-entropy towards the target), plus ``β‖α‖²``.

Targets (:func:`resolve_target`): a class (index or label), ``"flip"`` (leave the current class),
or for sigmoid (multi-label) classifiers a head turning ``"on"``/``"off"``/``"flip"``.

Modules: :mod:`.targets` (what the decision should become, :func:`resolve_target`, and how far it
is from it, :func:`decision_gap`); :mod:`.units` (edit units: RMS image change or standard
deviations); :mod:`.search` (the engine: :class:`SearchProblem` and the Newton, Adam and
minimal-edit searches over it); :mod:`.settings` (:class:`SearchSettings`, every option and its
default once); :mod:`.explainer` (:class:`CounterfactualExplainer`: options, batching, partial
results); :mod:`.joint` (the audit's joint search over stacked subspaces, with Integrated-Gradients
attribution); :mod:`.result` (:class:`CounterfactualResult`: the table and edits, saved and
loaded).
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__ = ["CounterfactualExplainer", "CounterfactualResult", "TargetSpec", "resolve_target", "decision_gap",
           "DEFAULT_BUDGETS", "EDIT_UNITS", "edit_basis", "edit_bases", "image_metric", "latent_spread", "RESULT_FORMAT_VERSION",
           "Crossing", "SearchChunk", "SearchEnd", "SearchProblem", "SearchSettings", "adam_search", "attach_partial_result",
           "minimal_edit", "newton_search"]

__getattr__, __dir__ = lazy_attributes(__name__, {
    "CounterfactualExplainer": ".explainer",
    "RESULT_FORMAT_VERSION": ".result",
    "CounterfactualResult": ".result",
    "attach_partial_result": ".result",
    "Crossing": ".search",
    "SearchChunk": ".search",
    "SearchEnd": ".search",
    "SearchProblem": ".search",
    "adam_search": ".search",
    "minimal_edit": ".search",
    "newton_search": ".search",
    "SearchSettings": ".settings",
    "TargetSpec": ".targets",
    "decision_gap": ".targets",
    "resolve_target": ".targets",
    "DEFAULT_BUDGETS": ".units",
    "EDIT_UNITS": ".units",
    "edit_basis": ".units",
    "edit_bases": ".units",
    "image_metric": ".units",
    "latent_spread": ".units",
})
