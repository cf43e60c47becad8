"""The per-semantic search's own columns and the standard counterfactual metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from ...subspaces.core import Subspace
from ..evidence import beyond_budget
from .base import Stage, Summary

__all__ = ["SearchColumns", "search_summary"]


def search_summary(items: pd.DataFrame, names: Sequence[str], prefix: str = "") -> dict[str, list[float]]:
    """Per subspace name, or per group of names (pooled): flip rate, median minimal edit of the
    flipped items (NaN when none flipped) and median decision sensitivity, as columns (``prefix`` +
    column name)."""
    columns: dict[str, list[float]] = {f"{prefix}flip_rate": [], f"{prefix}median_min_edit": [],
                                       f"{prefix}sensitivity": []}
    for name in names:
        rows = items[items["subspace"].isin([name] if isinstance(name, str) else list(name))]
        columns[f"{prefix}flip_rate"].append(float(rows["flipped"].mean()))
        columns[f"{prefix}median_min_edit"].append(float(rows["min_edit"].median()) if rows["flipped"].any()
                                                   else float("nan"))
        columns[f"{prefix}sensitivity"].append(float(rows["sensitivity"].median()))
    return columns


def _specificity(subspace: Subspace) -> float:
    """The subspace's measured specificity against random directions (NaN when not measured)."""
    measured = subspace.provenance.get("specificity")
    return float(measured["specificity"]) if measured else float("nan")


class SearchColumns(Stage):
    """What the per-semantic search found, per semantic: how often and how easily it flips the
    decision, and the standard metrics (validity, proximity)."""

    name = "search"
    title = "searching a counterfactual of every face in every subspace"
    columns = ("flip_rate", "median_min_edit", "sensitivity", "mean_delta_prob", "directions", "specificity",
               "other_heads_flipped", "median_queries")

    def prepare(self) -> None:
        self.context.explainer.prepare(self.context.names)  # the edit bases' collectives, before the searches

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        names, items, subspaces = summary.names, summary.items, self.context.explainer.subspaces
        grouped = items.groupby("subspace", sort=False)
        summary.columns.update(search_summary(items, names))
        summary.columns["mean_delta_prob"] = [float(grouped.get_group(s)["delta_prob"].mean()) for s in names]
        summary.columns["directions"] = [subspaces[s].dim for s in names]
        summary.columns["specificity"] = [_specificity(subspaces[s]) for s in names]
        if "other_heads_flipped" in items:
            summary.columns["other_heads_flipped"] = [float(grouped.get_group(s)["other_heads_flipped"].mean())
                                                      for s in names]
        if "queries" in items:  # a black-box search counted them
            summary.columns["median_queries"] = [float(grouped.get_group(s)["queries"].median()) for s in names]
            semantic_items = items[items["subspace"].isin(names)]
            summary.metrics["median_queries"] = float(semantic_items["queries"].median())
        for name in names:
            rows = grouped.get_group(name).sort_values("face")
            summary.edits[name] = beyond_budget(rows["flipped"].to_numpy(), rows["min_edit"].to_numpy())
        summary.metrics.update(_proximity(summary))


def _proximity(summary: Summary) -> dict[str, float]:
    """Validity and the proximity metrics of the flipped items."""
    items = summary.items
    flipped = items[items["flipped"]]
    nan = float("nan")
    latent_l1 = summary.search.deltas[torch.tensor(flipped.index.to_list(), dtype=torch.long)].abs().sum(dim=1)
    return {
        "validity": float(items["flipped"].mean()),
        "proximity_latent_l1": float(latent_l1.mean()) if len(flipped) else nan,
        "proximity_latent_l2": float(flipped["min_edit_latent"].mean()) if len(flipped) else nan,
        "proximity_std_units": float(flipped["min_edit"].mean()) if len(flipped) else nan,
        "proximity_pixel_l1": float(flipped["pixel_l1"].mean()) if len(flipped) else nan,
        "proximity_pixel_l2": float(flipped["pixel_l2"].mean()) if len(flipped) else nan,
    }
