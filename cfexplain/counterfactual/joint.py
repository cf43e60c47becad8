"""The joint counterfactual search over all subspaces at once, and its attribution to them.

For every face, one search over the stacked (scaled) bases of all subspaces: Adam on the search
loss plus a group lasso ``group_weight · Σ_s ‖α_s‖`` that keeps the edit to few semantics
(:func:`~cfexplain.counterfactual.search.adam_search`), then the minimal edit along the found
path. Integrated Gradients (captum) over the stacked coefficients, baseline no edit, attributes
each face's change of the decision gap up to its counterfactual (the minimal edit where the face
flips; the search's end where it does not) to the semantics. The end point would not do: a search
can overshoot along a path whose gap rises past the boundary and falls again, and IG along such a
path gives large attributions that cancel (one such face moved the shares of 32 faces by up to
2.6 between two thread counts). The sparsity count keeps only the most important semantics'
coefficients, one more at a time, until the edit flips the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .queries import EXACT_SHAPLEY_MAX, finite_difference_search, shapley_attribution
from .search import SearchChunk, SearchProblem, adam_search, minimal_edit
from .settings import SearchSettings
from .targets import decision_gap

__all__ = ["JOINT_BATCH_FACES", "JointResult", "attribution_method", "joint_counterfactuals", "joint_queries",
           "summarise_joint"]


@dataclass
class JointResult:
    """The joint search of an audit.

    Attributes:
        table: one row per face: ``face, flipped, min_edit, end_edit, steps, sparsity`` (the number
            of semantics the edit needs), ``semantics_used``, ``norm:<semantic>`` (the
            coefficient norm per semantic) and, with attribution, ``gap_change`` (the change of
            the decision gap Integrated Gradients attributes), ``attribution:<semantic>`` (its
            part per semantic) and ``ig_delta`` (IG's convergence delta).
        shares: per semantic, the share of the decision change that Integrated Gradients gives
            it, over the faces the joint search flips: each face's shares (its attributions over its
            change, summing to 1) averaged with the face's absolute change as weight, so that a
            face whose edit barely moves the decision cannot swamp the mean (NaN without
            attribution, or when nothing flipped).
        metrics: ``joint_validity``, ``joint_sparsity``, ``joint_median_min_edit``, and the
            attribution's check: ``ig_relative_convergence_delta`` (Integrated Gradients) or
            ``shapley_relative_delta`` (a black box's Shapley values).
    """

    table: pd.DataFrame
    shares: dict[str, float]
    metrics: dict[str, float]


def _attribute(chunk: SearchChunk, alpha: torch.Tensor, groups: torch.Tensor, count: int, ig_steps: int,
               batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrated Gradients of the decision gap over the stacked coefficients, per face: the
    change it attributes, the attribution per semantic ``(n, count)``, and the convergence delta
    (the true change of the gap minus the attributed one)."""
    from captum.attr import IntegratedGradients

    problem = chunk.problem
    basis = problem.bases[0]

    def forward(coefficients, base_codes, modes, indices):
        logits = problem.logits_of(problem.images_of(base_codes + coefficients @ basis.T))
        return decision_gap(logits, modes, indices, problem.threshold_logit)

    ig = IntegratedGradients(forward)
    attributions, delta = ig.attribute(alpha, baselines=torch.zeros_like(alpha), n_steps=ig_steps,
                                       additional_forward_args=(problem.codes[chunk.faces],
                                                                problem.target.mode[chunk.faces],
                                                                problem.target.index[chunk.faces]),
                                       internal_batch_size=batch_size, return_convergence_delta=True)
    change = attributions.sum(dim=1)
    per_group = torch.stack([attributions[:, groups == g].sum(dim=1) for g in range(count)], dim=1)
    return change, per_group, delta


def _semantics_needed(chunk: SearchChunk, alpha: torch.Tensor, groups: torch.Tensor, importance: torch.Tensor,
                      flipped: torch.Tensor) -> torch.Tensor:
    """Per face, how many semantics the joint edit needs: keep only the m most important groups of
    its coefficients, for m = 1, 2, …, and count until the decision flips (0 where the full joint
    edit does not flip it; every semantic where no truncation flips it)."""
    n, count = alpha.shape[0], importance.shape[1]
    order = importance.argsort(dim=1, descending=True)
    needed = torch.zeros(n, dtype=torch.long)
    pending = flipped.clone().cpu()
    with torch.no_grad():
        for m in range(1, count + 1):
            rows = pending.nonzero()[:, 0]
            if len(rows) == 0:
                break
            kept = (groups[None, :] == order[rows, :m, None].to(alpha.device)).any(dim=1)  # (rows, K)
            where = rows.to(alpha.device)
            gap = chunk.gap(chunk.logits(alpha[where] * kept, where), where)
            done = (gap >= 0).cpu()
            needed[rows[done]] = m
            pending[rows[done]] = False
    needed[pending] = count
    return needed


def joint_queries(settings: SearchSettings, width: int) -> int:
    """The query budget of a black-box joint counterfactual over ``width`` stacked coefficients:
    ``max_queries``, or enough for four finite-difference Newton steps and the root search when
    that is more (each step's gradient costs ``width`` queries)."""
    return max(settings.max_queries, 4 * (width + 1) + settings.boundary_steps + width)


def attribution_method(black_box: bool, semantics: int) -> str:
    """How the joint counterfactuals are attributed: ``"integrated_gradients"``, or for a black
    box ``"shapley_exact"`` (up to :data:`EXACT_SHAPLEY_MAX` semantics) or ``"shapley_sampled"``."""
    if not black_box:
        return "integrated_gradients"
    return "shapley_exact" if semantics <= EXACT_SHAPLEY_MAX else "shapley_sampled"


JOINT_BATCH_FACES = 8
"""Faces the joint search and its attribution take together. Each batch is searched on its own, so
a face's result depends on its batch only: a distributed audit, whose shares of the faces are whole
batches, computes every face exactly as one process does (Integrated Gradients through ReLU
networks turns rounding differences of other batch compositions into visible ones)."""


def joint_counterfactuals(problem: SearchProblem, settings: SearchSettings, names: Sequence[str],
                          widths: Sequence[int], *, group_weight: float = 0.1, steps: int = 100, ig_steps: int = 32,
                          attribution: bool = True, progress: bool = False) -> JointResult:
    """The joint search of ``problem`` (one item per face, in the stacked bases of the subspaces
    ``names``, ``widths`` coefficients each), its sparsity and (with ``attribution``) its
    Integrated-Gradients attribution (module docstring), :data:`JOINT_BATCH_FACES` faces at a
    time, with the search's ``settings`` (its unit, budget, margin …); ``progress`` shows a bar
    over the faces.
    :meth:`CounterfactualExplainer.explain_jointly` builds the problem and calls it."""
    names = list(names)
    like = problem.codes
    groups = torch.as_tensor(np.repeat(np.arange(len(names)), list(widths)), device=like.device)
    faces = torch.arange(problem.items, device=like.device)
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=problem.items, desc="joint search", unit="face", disable=not progress, leave=False) as bar:
        for rows in faces.split(JOINT_BATCH_FACES):
            parts.append(_joint_batch(settings, problem.chunk(rows, with_images=False), names, groups, group_weight,
                                      steps, ig_steps, attribution))
            bar.update(len(rows))
    table = pd.concat(parts, ignore_index=True)
    return JointResult(table, *summarise_joint(table, names))


def _joint_batch(settings: SearchSettings, chunk: SearchChunk, names: list[str], groups: torch.Tensor,
                 group_weight: float, steps: int, ig_steps: int, attribution: bool) -> pd.DataFrame:
    """The joint table's rows of one batch of faces (``chunk``, one item per face)."""
    s = settings
    if s.black_box:
        end = finite_difference_search(chunk, budget=s.budget, margin=s.margin, steps=s.steps, patience=s.patience,
                                       max_queries=joint_queries(s, len(groups)), reserve=s.boundary_steps,
                                       batch_size=s.batch_size)
    else:
        end = adam_search(chunk, budget=s.budget, margin=s.margin, loss=s.loss, beta=s.beta, lr=s.lr, steps=steps,
                          groups=groups, group_weight=group_weight)
    crossing = minimal_edit(chunk, end, margin=s.margin, iterations=s.boundary_steps, batch_size=s.batch_size)
    alpha, flipped = end.alpha, ~torch.isnan(crossing.t)
    norms = torch.stack([alpha[:, groups == g].norm(dim=1) for g in range(len(names))], dim=1)  # (n, S)
    importance = norms  # norms order the sparsity count without attribution
    columns: dict[str, Any] = {}
    if s.black_box:
        columns["queries"] = (end.queries + crossing.queries).numpy()
    if attribution:  # of the counterfactual: the minimal edit where it flipped, else the search's end
        counterfactual = alpha * torch.nan_to_num(crossing.t, nan=1.0)[:, None]
        if s.black_box:
            change, importance, delta, queries = shapley_attribution(chunk, counterfactual, groups, len(names),
                                                                     s.batch_size, seed=s.seed)
            columns["attribution_queries"] = queries.numpy()
            delta_column = "shapley_delta"
        else:
            change, importance, delta = _attribute(chunk, counterfactual, groups, len(names), ig_steps, s.batch_size)
            delta_column = "ig_delta"
        importance = importance.detach()
        columns.update({"gap_change": change.detach().cpu().numpy(), delta_column: delta.detach().cpu().numpy(),
                        **{f"attribution:{name}": importance[:, g].cpu().numpy() for g, name in enumerate(names)}})
    needed = _semantics_needed(chunk, alpha, groups, importance, flipped)
    min_edit = (alpha.norm(dim=1) * torch.nan_to_num(crossing.t)).where(flipped, torch.full_like(crossing.t, float("nan")))
    used = [", ".join(np.array(names)[order[:k].cpu().numpy()]) if k > 0 else ""
            for order, k in zip(importance.argsort(dim=1, descending=True), needed.tolist())]
    table = pd.DataFrame({"face": chunk.faces.cpu().numpy(), "flipped": flipped.cpu().numpy(),
                          "min_edit": min_edit.cpu().numpy(), "end_edit": alpha.norm(dim=1).cpu().numpy(),
                          "steps": end.steps.numpy(), "sparsity": needed.cpu().numpy(), "semantics_used": used})
    for g, name in enumerate(names):
        table[f"norm:{name}"] = norms[:, g].cpu().numpy()
    for column, values in columns.items():
        table[column] = values
    return table


def summarise_joint(table: pd.DataFrame, names: Sequence[str]) -> tuple[dict[str, float], dict[str, float]]:
    """The shares and metrics of :class:`JointResult` from its per-face ``table`` (of one search,
    or of several over disjoint faces, concatenated)."""
    flipped = table["flipped"].to_numpy(dtype=bool)
    shares = {name: float("nan") for name in names}
    delta = "shapley_delta" if "shapley_delta" in table else "ig_delta"  # the attribution's own check
    error = float("nan")
    if "gap_change" in table:
        change = table["gap_change"].to_numpy()
        weight = np.abs(change[flipped]).sum()  # only counterfactuals: a failed edit's attributions mean nothing
        if weight > 1e-12:  # each face's shares weighted by its decision change: Σ_f sign(c_f) a_fs / Σ_f |c_f|
            shares = {name: float((np.sign(change) * table[f"attribution:{name}"].to_numpy())[flipped].sum() / weight)
                      for name in names}
        error = float(np.abs(table[delta].to_numpy()).mean() / max(np.abs(change).mean(), 1e-12))
    metrics = {"joint_validity": float(flipped.mean()),
               "joint_sparsity": float(table["sparsity"].to_numpy()[flipped].mean()) if flipped.any() else float("nan"),
               "joint_median_min_edit": float(np.nanmedian(table["min_edit"])) if flipped.any() else float("nan"),
               "shapley_relative_delta" if delta == "shapley_delta" else "ig_relative_convergence_delta": error}
    return shares, metrics
