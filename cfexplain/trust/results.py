"""The typed results of the trust checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

__all__ = ["PlantedCheck", "RandomizationCheck", "StabilityCheck"]


@dataclass(frozen=True)
class PlantedCheck:
    """The outcome of :func:`~cfexplain.trust.planted_shortcut_check`.

    Attributes:
        planted: the semantic that should rank first.
        rank: its rank in the audit (1 = first; tied semantics share a rank).
        ranking: the audit's ranking.
        passed: the planted semantic ranked first, alone.
        table: the audit's table.
        nothing_flipped: no semantic flipped any face within the budget (the rank then follows
            the decision's sensitivity).
        train_accuracy, val_accuracy: of the planted classifier on its label.
    """

    planted: str
    rank: int
    ranking: list[str]
    passed: bool
    table: pd.DataFrame
    nothing_flipped: bool
    train_accuracy: float
    val_accuracy: float


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
