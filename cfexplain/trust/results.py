"""The typed results of the trust checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

__all__ = ["CORRECT_CLAIM", "FALSE_CLAIM", "PlantedCheck", "RandomizationCheck", "StabilityCheck"]


CORRECT_CLAIM, FALSE_CLAIM = "correct claim", "false claim"
"""Outcomes of a planted-shortcut check beside ``no evidence`` and ``cannot tell``."""


@dataclass(frozen=True)
class PlantedCheck:
    """The outcome of :func:`~cfexplain.trust.planted_shortcut_check`.

    Attributes:
        planted: the semantic the classifier secretly uses (``None`` for a negative control).
        outcome: ``"correct claim"`` (the audit claims the planted semantic, and nothing else),
            ``"false claim"`` (it claims another semantic, or any on a negative control), ``"no
            evidence"`` or ``"cannot tell"`` (its answer names no semantic).
        claimed: the semantics whose verdict is ``evidence``.
        verdict, rank: the planted semantic's (``None`` for a negative control).
        ranking: the audit's ranking; table: the audit's table.
        nothing_flipped: no semantic flipped any face within the budget.
        train_accuracy, val_accuracy: of the planted classifier on its label.
    """

    planted: str | None
    outcome: str
    claimed: list[str]
    verdict: str | None
    rank: int | None
    ranking: list[str]
    table: pd.DataFrame
    nothing_flipped: bool
    train_accuracy: float
    val_accuracy: float

    @property
    def passed(self) -> bool:
        """A correct claim, or for a negative control no claim at all."""
        return self.outcome == CORRECT_CLAIM or (self.planted is None and self.outcome != FALSE_CLAIM)


@dataclass(frozen=True)
class RandomizationCheck:
    """The outcome of :func:`~cfexplain.trust.randomization_check`.

    Attributes:
        changed: the rankings differ, or some semantic's flip rate moved by more than 0.2.
        rank_correlation: correlation of the two rankings (NaN with two semantics or fewer).
        flip_rate_change: the largest change of a semantic's flip rate.
        original, randomized: the rankings of the classifier and of its randomised copy.
    """

    changed: bool
    rank_correlation: float
    flip_rate_change: float
    original: list[str]
    randomized: list[str]


@dataclass(frozen=True)
class StabilityCheck:
    """The outcome of :func:`~cfexplain.trust.stability_check`.

    Attributes:
        agreement: per semantic, the mean squared cosine of the principal angles between the two
            subspaces learned from disjoint samples (1 = identical).
        seeds: the two seeds.
    """

    agreement: Mapping[str, float]
    seeds: tuple[int, int]

    @property
    def worst(self) -> float:
        """The smallest agreement over the semantics."""
        return min(self.agreement.values())
