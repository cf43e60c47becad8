"""Side effects: how much a counterfactual moved what its semantic keeps invariant, against a random
edit of the same size; and the latent-gradient control's row, whose side effect is measured on the
keep criteria of every semantic together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def side_effect_ratios(generator: Generator, result: CounterfactualResult, first_face: int,
                       keep_criteria: Mapping[str, Sequence[Criterion]], seed: int, chunk: int,
                       progress: bool = False) -> dict[str, list[float]]:
    """Per subspace of ``result`` (whose faces are faces ``first_face, first_face + 1, …`` of the
    audit), the ratios mean_k ‖Δkeep_k(minimal)‖ / ‖Δkeep_k(random edit of the same size)‖ over the
    subspace's ``keep_criteria``, one per flipped item, measured ``chunk`` items at a time.

    Each item's random edit is drawn from its own stream, seeded by ``seed``, the item's face in the
    audit and its subspace's place in ``result``: it is the same however the faces are shared out
    among processes or rounds. ``progress`` shows a bar over the items."""
    from tqdm.auto import tqdm

    table = result.table
    ratios: dict[str, list[float]] = {}
    measured = {name: table.index[(table["subspace"] == name) & table["flipped"]].to_numpy()
                for name in result.subspaces if keep_criteria.get(name)}
    bar = tqdm(total=sum(len(rows) for rows in measured.values()), desc="side effects", unit="item",
               disable=not progress, leave=False)
    for position, name in enumerate(result.subspaces):
        keep = list(keep_criteria.get(name, ()))
        rows = measured.get(name, ())
        ratios[name] = []
        if not keep or len(rows) == 0:
            continue
        for start in range(0, len(rows), chunk):
            block = rows[start:start + chunk]
            faces = first_face + table["face"].to_numpy()[block]
            random = torch.stack([torch.randn(result.deltas.shape[1], dtype=result.deltas.dtype,
                                              generator=make_rng(seed + 104729 + 7919 * position + 1_000_003 * int(face)))
                                  for face in faces])
            ratios[name].extend(_keep_ratios(generator, result, torch.tensor(block, dtype=torch.long), random, keep).tolist())
            bar.update(len(block))
    bar.close()
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
    title = "measuring the side effects of the edits"
    columns = ("side_effect",)

    def run(self, shard: Shard) -> dict[str, list[float]]:
        context = self.context
        keep = {s.name: list(s.keep) for s in context.semantics if s.name in context.names}
        return side_effect_ratios(context.explainer.generator, shard.search, shard.first_face, keep,
                                  context.settings.seed, context.explainer.settings.batch_size,
                                  context.explainer.settings.progress and context.ranks.is_main)

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        summary.columns["side_effect"] = [median_ratio([r for part in parts for r in part.get(name, [])])
                                          for name in summary.names]


class LatentGradientControl(Stage):
    """The unconstrained control's row (``AuditResult.baseline``): each face searched along its own
    latent gradient (items of the per-semantic search), its side effect over the keep criteria of
    every semantic together."""

    name = "latent_gradient"
    title = "the unconstrained control along each face's latent gradient"

    def run(self, shard: Shard) -> list[float]:
        context = self.context
        together: list[Criterion] = []
        for semantic in context.semantics:
            together += [c for c in semantic.keep if all(c is not k for k in together)]
        ratios = side_effect_ratios(context.explainer.generator, shard.search, shard.first_face,
                                    {BASELINE_NAME: together}, context.settings.seed, context.explainer.settings.batch_size,
                                    context.explainer.settings.progress and context.ranks.is_main)
        return ratios[BASELINE_NAME]

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        table = summary.search.table
        items = table[table["subspace"] == BASELINE_NAME]
        row: dict[str, Any] = {"semantic": BASELINE_NAME,
                               **{k: v[0] for k, v in search_summary(items, [BASELINE_NAME]).items()},
                               "mean_delta_prob": float(items["delta_prob"].mean()), "directions": 1}
        row["side_effect"] = median_ratio([r for part in parts for r in part])
        flipped = items[items["flipped"]]
        row["median_pixel_l2"] = float(flipped["pixel_l2"].median()) if len(flipped) else float("nan")
        summary.baseline = pd.DataFrame([row])
