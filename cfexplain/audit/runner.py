"""Runs an audit's stages: in one process or in each of a distributed audit's, with resume, then
gathers the parts where the table is assembled.

Every process prepares every stage (the edit bases, whose image metric the processes share), runs
each stage on its own faces, saving each finished stage to its checkpoint (when there is a
``checkpoint_dir``), and sends its parts to rank 0, which summarises them in stage order into a
:class:`~cfexplain.audit.stages.Summary`. Collectives never depend on what a checkpoint holds: a
stage restored from a checkpoint still joins the collectives it would have joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._checkpoint import Checkpoint
from .._fingerprint import fingerprint
from .._progress import status
from ..counterfactual import CounterfactualResult
from .stages import AuditContext, Shard, Stage, Summary

__all__ = ["StageRunner", "ShardParts"]


@dataclass
class ShardParts:
    """What one process sends to rank 0: its number of faces, its per-semantic search and each
    stage's part, by stage name."""

    faces: int
    search: CounterfactualResult
    parts: dict[str, Any]


class StageRunner:
    """Prepares, runs and summarises the stages of one audit (module docstring).

    Args:
        context: the audit's context.
        stages: the stage classes, in order (:func:`~cfexplain.audit.stages.stages_for`).
    """

    def __init__(self, context: AuditContext, stages: Sequence[type[Stage]]) -> None:
        self.context = context
        self.stages = [stage(context) for stage in stages]
        self.talk = context.explainer.settings.progress and context.ranks.is_main
        status("audit: measuring the edit unit of every subspace", self.talk)
        for stage in self.stages:
            stage.prepare()
        status(f"audit: {self.stages[0].title if self.stages else 'searching'}", self.talk)

    def run(self, codes: torch.Tensor, search: CounterfactualResult, first_face: int = 0) -> list[ShardParts] | None:
        """Every stage on this process's faces ``codes``, faces ``first_face, …`` of the audit (whose
        per-semantic search is ``search``); returns every process's parts on rank 0, ``None`` on
        the others."""
        shard = Shard(codes, search, first_face)
        checkpoint = self._checkpoint(codes)
        state = (checkpoint.load() or {}) if checkpoint is not None else {}
        for stage in self.stages:
            if stage.name not in state:
                if type(stage).run is not Stage.run:
                    status(f"audit: {stage.title}", self.talk)
                state[stage.name] = stage.run(shard)
                if checkpoint is not None:
                    checkpoint.save(state)
        parts = ShardParts(len(codes), search, {stage.name: state[stage.name] for stage in self.stages})
        return self.context.ranks.gather(parts)

    def summarise(self, gathered: Sequence[ShardParts]) -> Summary:
        """The summary of every process's parts, each stage adding its own."""
        if len(gathered) == 1:
            search = gathered[0].search
        else:
            search = CounterfactualResult.concatenate([part.search for part in gathered])
        summary = Summary(list(self.context.names), search, [part.faces for part in gathered])
        for stage in self.stages:
            stage.summarise([part.parts[stage.name] for part in gathered], summary)
        return summary

    def _checkpoint(self, codes: torch.Tensor) -> Checkpoint | None:
        context = self.context
        if context.checkpoint_dir is None:
            return None
        explainer = context.explainer
        key = fingerprint(codes, context.target, context.names, [explainer.subspaces[s].basis for s in context.names],
                          {k: v for k, v in explainer.settings.to_dict().items() if k != "progress"}, context.settings.to_dict(),
                          [stage.name for stage in self.stages], {s.name: s.describe() for s in context.semantics},
                          context.ranks.rank, context.ranks.world_size, explainer.classifier, explainer.generator)
        return Checkpoint(Path(context.checkpoint_dir) / f"audit-{key}.pt", "audit")
