"""The joint search over all subspaces at once and its Integrated-Gradients attribution
(:mod:`cfexplain.counterfactual.joint`): the ``attribution`` columns and the joint metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...counterfactual.joint import summarise_joint
from .base import Shard, Stage, Summary, frame_of, frame_state

__all__ = ["JointSearch"]


class JointSearch(Stage):
    """One joint search per face, its sparsity and (with ``attribution``) its attribution."""

    name = "joint"
    title = "the joint search over all subspaces, with its attribution"
    columns = ("attribution", "attribution_rank")

    def run(self, shard: Shard) -> dict[str, Any]:
        context, settings = self.context, self.context.settings
        result = context.explainer.explain_jointly(shard.codes, target=context.target, subspaces=context.names,
                                                   group_weight=settings.group_weight, steps=settings.joint_steps,
                                                   ig_steps=settings.ig_steps, attribution=settings.attribution)
        return frame_state(result.table)

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        offsets = np.cumsum([0] + summary.faces[:-1])
        frames = [frame_of(part).assign(face=lambda t, o=offset: t["face"] + o) for part, offset in zip(parts, offsets)]
        summary.joint = pd.concat(frames, ignore_index=True)
        shares, metrics = summarise_joint(summary.joint, summary.names)
        summary.metrics.update(metrics)
        attribution = pd.Series([shares[name] for name in summary.names])
        summary.columns["attribution"] = attribution.tolist()
        summary.columns["attribution_rank"] = attribution.rank(ascending=False, method="min").astype("Int64").tolist()
