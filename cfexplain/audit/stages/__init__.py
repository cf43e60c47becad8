"""The audit's stages, each one part of the audit that computes its own columns
(:mod:`cfexplain.audit.stages.base` says what a stage is).

========================  ==================================================================
stage                     columns
========================  ==================================================================
SearchColumns             what the per-semantic search found (flip rate, minimal edit, …)
RandomControl             the random control's columns
Evidence                  the verdicts against the control, and the ranking
JointSearch               the joint search's attribution
SideEffects               side effects on the keep criteria
LatentGradientControl     the unconstrained control's row (``AuditResult.baseline``)
========================  ==================================================================
"""

from __future__ import annotations

from ..settings import AuditSettings
from .base import AuditContext, Shard, Stage, Summary
from .control import Evidence, RandomControl
from .joint import JointSearch
from .search import SearchColumns
from .side_effects import LatentGradientControl, SideEffects

__all__ = ["ALL_STAGES", "AuditContext", "Evidence", "JointSearch", "LatentGradientControl", "RandomControl",
           "SearchColumns", "Shard", "SideEffects", "Stage", "Summary", "stages_for"]

ALL_STAGES: tuple[type[Stage], ...] = (SearchColumns, RandomControl, Evidence, JointSearch, SideEffects,
                                       LatentGradientControl)
"""Every stage, in the order they run and summarise (the evidence needs the control's edits)."""


def stages_for(settings: AuditSettings) -> list[type[Stage]]:
    """The stages an audit with ``settings`` runs, in order."""
    skipped = {RandomControl: settings.controls == 0, JointSearch: not settings.joint,
               LatentGradientControl: not settings.baseline}
    return [stage for stage in ALL_STAGES if not skipped.get(stage, False)]
