"""Side effects: how much a counterfactual moved what its semantic keeps invariant, against a random
edit of the same size; and the latent-gradient control's row, whose side effect is measured on the
keep criteria of every semantic together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..._shared import shared_analyses
from ...counterfactual import CounterfactualResult
from ...counterfactual.baseline import BASELINE_NAME
from ...criteria.base import Criterion
from ...generators.base import Generator, make_rng
from .base import Shard, Stage, Summary
from .search import search_summary

__all__ = ["SideEffects", "LatentGradientControl", "side_effect_ratios"]

Ratios = tuple[list[int], list[float]]
"""Item rows (of every process's items, in single-process order) and their side-effect ratios."""


def side_effect_ratios(generator: Generator, result: CounterfactualResult, global_rows: np.ndarray,
                       items: pd.DataFrame, keep_criteria: Mapping[str, Sequence[Criterion]], seed: int,
                       chunk: int) -> dict[str, Ratios]:
    """Per subspace of ``result`` and flipped item: mean_k ‖Δkeep_k(minimal)‖ / ‖Δkeep_k(random
    edit of the same size)‖ over the subspace's ``keep_criteria``, as (item rows, ratios).

    ``items`` are the items of every process's search, in the order of one search over all the
    faces, and ``global_rows[j]`` is the row there of ``result``'s item ``j``. The random edits are
    drawn from ``seed`` for every flipped item, ``chunk`` items at a time in that order, as a single
    process draws them; this process measures its own items."""
    rng = make_rng(seed + 104729)
    local_of = {int(g): j for j, g in enumerate(global_rows)}
    ratios: dict[str, Ratios] = {}
    for name in result.subspaces:
        keep = list(keep_criteria.get(name, ()))
        flipped = items.index[(items["subspace"] == name) & items["flipped"]].to_numpy()
        ratios[name] = ([], [])
        if not keep or len(flipped) == 0:
            continue
        mine, directions = [], []
        for start in range(0, len(flipped), chunk):
            block = flipped[start:start + chunk]
            random = torch.randn((len(block), result.deltas.shape[1]), generator=rng, dtype=result.deltas.dtype)
            for row, direction in zip(block, random):
                if int(row) in local_of:
                    mine.append(int(row))
                    directions.append(direction)
        for start in range(0, len(mine), chunk):
            rows = torch.tensor([local_of[g] for g in mine[start:start + chunk]], dtype=torch.long)
            measured = _keep_ratios(generator, result, rows, torch.stack(directions[start:start + chunk]), keep)
            ratios[name][0].extend(mine[start:start + chunk])
            ratios[name][1].extend(measured.tolist())
    return ratios


def _keep_ratios(generator: Generator, result: CounterfactualResult, rows: torch.Tensor, random: torch.Tensor,
                 keep: Sequence[Criterion]) -> torch.Tensor:
    """For the items ``rows`` of ``result``: mean over ``keep`` of how far the criterion moved at
    the minimal counterfactual over how far it moves under ``random`` (rows rescaled to each
    item's latent edit length)."""
    faces = torch.tensor(result.table["face"].to_numpy()[rows.numpy()], dtype=torch.long)
    base, delta = result.codes[faces], result.deltas[rows]
    random = random / random.norm(dim=1, keepdim=True) * delta.norm(dim=1, keepdim=True)
    shape, device = (-1, *result.latent_shape), generator.device
    with torch.no_grad():
        x0 = generator.synthesize(base.reshape(shape).to(device), space=result.space)
        x1 = generator.synthesize((base + delta).reshape(shape).to(device), space=result.space)
        xr = generator.synthesize((base + random).reshape(shape).to(device), space=result.space)
        with shared_analyses():
            contexts = [c.prepare(x0) for c in keep]
        per_criterion = []
        for criterion, context in zip(keep, contexts):
            c0 = criterion.outputs(x0, context)
            moved = (criterion.outputs(x1, context) - c0).norm(dim=1)
            baseline = (criterion.outputs(xr, context) - c0).norm(dim=1).clamp_min(1e-12)
            per_criterion.append(moved / baseline)
    return torch.stack(per_criterion).mean(dim=0).cpu()


def median_ratio(values: Sequence[float]) -> float:
    """The median side-effect ratio (torch's: the lower middle value), NaN without any."""
    return float(torch.tensor(values).median()) if len(values) else float("nan")


class SideEffects(Stage):
    """The ``side_effect`` column: each semantic's keep criteria at its minimal counterfactuals."""

    name = "side_effects"
    columns = ("side_effect",)
    needs_all_items = True

    def run(self, shard: Shard) -> dict[str, Ratios]:
        context = self.context
        keep = {s.name: list(s.keep) for s in context.semantics if s.name in context.names}
        global_rows, items = shard.all_items()
        return side_effect_ratios(context.explainer.generator, shard.search, global_rows, items, keep,
                                  context.settings.seed, context.explainer.settings.batch_size)

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        summary.columns["side_effect"] = [median_ratio([r for part in parts for r in part.get(name, ([], []))[1]])
                                          for name in summary.names]


class LatentGradientControl(Stage):
    """The unconstrained control's row (``AuditResult.baseline``): each face searched along its own
    latent gradient (items of the per-semantic search), its side effect over the keep criteria of
    every semantic together."""

    name = "latent_gradient"
    needs_all_items = True

    def run(self, shard: Shard) -> Ratios:
        context = self.context
        together: list[Criterion] = []
        for semantic in context.semantics:
            together += [c for c in semantic.keep if all(c is not k for k in together)]
        global_rows, items = shard.all_items()
        ratios = side_effect_ratios(context.explainer.generator, shard.search, global_rows, items,
                                    {BASELINE_NAME: together}, context.settings.seed, 16)  # chunks of 16, its own draws
        return ratios[BASELINE_NAME]

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        table = summary.search.table
        items = table[table["subspace"] == BASELINE_NAME]
        row: dict[str, Any] = {"semantic": BASELINE_NAME,
                               **{k: v[0] for k, v in search_summary(items, [BASELINE_NAME]).items()},
                               "mean_delta_prob": float(items["delta_prob"].mean()), "directions": 1}
        row["side_effect"] = median_ratio([r for part in parts for r in part[1]])
        flipped = items[items["flipped"]]
        row["median_pixel_l2"] = float(flipped["pixel_l2"].median()) if len(flipped) else float("nan")
        summary.baseline = pd.DataFrame([row])
