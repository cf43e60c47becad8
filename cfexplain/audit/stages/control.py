"""The random control and the evidence measured against it.

:class:`RandomControl` searches ``controls`` random orthonormal subspaces of every dimension the
semantics have, on the same faces with the same unit, budget and search: the distribution of how
easily *any* edit of that size flips the decision. :class:`Evidence` tests every semantic against
the control of its dimension face by face (:mod:`cfexplain.audit.evidence`), gives the verdicts and
ranks the semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...counterfactual import CounterfactualExplainer
from ...generators.base import make_rng
from ...subspaces.core import Subspace, SubspaceSet
from ...subspaces.specificity import SemanticSpecificity
from .. import evidence
from .base import Shard, Stage, Summary, frame_of, frame_state
from .search import search_summary

__all__ = ["RandomControl", "Evidence", "random_subspaces"]


def random_subspaces(subspaces: SubspaceSet, names: Sequence[str], count: int, seed: int) -> SubspaceSet:
    """``count`` random orthonormal subspaces for each distinct dimension ``k`` of the subspaces
    ``names`` (named ``random-k-r``), drawn from ``seed`` alike in every process."""
    rng = make_rng(seed + 15485863)
    dim = int(np.prod(subspaces.latent_shape))
    dtype = subspaces[names[0]].basis.dtype
    drawn = []
    for k in sorted({subspaces[name].dim for name in names}):
        for r in range(count):
            basis = torch.linalg.qr(torch.randn(dim, k, generator=rng, dtype=torch.float64))[0].to(dtype)
            drawn.append(Subspace(f"random-{k}-{r}", basis, torch.ones(k), subspaces.space, tuple(subspaces.latent_shape)))
    return SubspaceSet(drawn)


class RandomControl(Stage):
    """The same search in ``controls`` random subspaces of each dimension (module docstring)."""

    name = "random"
    title = "the random control: the same search in random subspaces of each dimension"
    columns = ("random_flip_rate", "random_median_min_edit", "random_sensitivity")

    def prepare(self) -> None:
        context = self.context
        explainer = context.explainer
        self.subspaces = random_subspaces(explainer.subspaces, context.names, context.settings.controls,
                                          context.settings.seed)
        self.explainer = CounterfactualExplainer(explainer.generator, explainer.classifier, self.subspaces,
                                                 ranks=context.ranks, **explainer.settings.to_dict())
        self.explainer.prepare()  # the edit bases' collectives, before the searches

    def run(self, shard: Shard) -> dict[str, Any]:
        table = self.explainer.explain(shard.codes, target=self.context.target,
                                       checkpoint_dir=self.context.checkpoint_dir).table
        return frame_state(table[["face", "subspace", "flipped", "min_edit", "sensitivity"]])

    def of(self, name: str) -> list[str]:
        """The names of the control's subspaces for the semantic ``name``."""
        k = self.context.explainer.subspaces[name].dim
        return [f"random-{k}-{r}" for r in range(self.context.settings.controls)]

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        offsets = np.cumsum([0] + summary.faces[:-1])
        items = pd.concat([frame_of(part).assign(face=lambda t, o=offset: t["face"] + o)
                           for part, offset in zip(parts, offsets)], ignore_index=True)
        groups = [self.of(name) for name in summary.names]
        summary.columns.update(search_summary(items, groups, prefix="random_"))
        for name, group in zip(summary.names, groups):
            summary.control[name] = group
        for subspace, rows in items.groupby("subspace", sort=False):
            rows = rows.sort_values("face")
            summary.edits[str(subspace)] = evidence.beyond_budget(rows["flipped"].to_numpy(), rows["min_edit"].to_numpy())


def _specificity(subspace: Subspace) -> SemanticSpecificity | None:
    """The subspace's specificity as ``learn`` measured it (``None`` when it was not)."""
    measured = subspace.provenance.get("specificity")
    return SemanticSpecificity.from_dict(measured) if measured else None


class Evidence(Stage):
    """Each semantic tested against its control, its verdict, and the ranking (module docstring of
    :mod:`cfexplain.audit.evidence`)."""

    name = "evidence"
    columns = ("verdict", "rank", "effect", "effect_low", "effect_high", "p_value", "edit_ratio", "reason")

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        names, alpha = summary.names, self.context.settings.alpha
        edits = {name: summary.edits[name] for name in names}
        better = evidence.pairwise_dominance(edits, alpha)
        summary.columns["rank"] = evidence.ranks_of(edits, better)
        nan = [float("nan")] * len(names)
        if not summary.control:
            summary.columns.update({"verdict": [evidence.NOT_TESTED] * len(names), "effect": nan, "effect_low": nan,
                                    "effect_high": nan, "p_value": nan, "edit_ratio": nan,
                                    "reason": ["the audit ran without its random control"] * len(names)})
            return
        tests = {name: evidence.compare_with_control(
            edits[name], np.stack([summary.edits[r] for r in summary.control[name]], axis=1)) for name in names}
        adjusted = dict(zip(names, evidence.holm([tests[name].p_value for name in names])))
        subspaces = self.context.explainer.subspaces
        measured = {name: _specificity(subspaces[name]) for name in names}
        verdicts = evidence.verdicts(edits, tests, adjusted, measured, alpha, better)
        summary.columns.update({
            "verdict": [verdicts[name].verdict for name in names], "reason": [verdicts[name].reason for name in names],
            "effect": [tests[name].effect for name in names], "effect_low": [tests[name].low for name in names],
            "effect_high": [tests[name].high for name in names], "p_value": [adjusted[name] for name in names],
            "edit_ratio": [tests[name].edit_ratio for name in names]})
        summary.metrics["detectable_effect"] = evidence.detectable_effect(len(edits[names[0]]),
                                                                          self.context.settings.controls, len(names), alpha)
        summary.metrics["semantics_with_evidence"] = float(sum(v.verdict == evidence.EVIDENCE for v in verdicts.values()))
