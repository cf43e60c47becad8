"""What every stage of an audit shares: its context, the faces it works on, the summary it adds to.

A stage computes one part of an audit. :meth:`Stage.prepare` runs before the searches, in every
process alike (where the distributed audit's collectives belong); :meth:`Stage.run` computes the
stage's part on one process's faces (a :class:`Shard`) and returns plain data, which the runner
saves to the process's checkpoint; :meth:`Stage.summarise` runs once, where the parts of every
process are gathered, and adds the stage's columns (those it declares in :attr:`Stage.columns`),
metrics and tables to the :class:`Summary`.
"""

from __future__ import annotations

import os
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from ...counterfactual import CounterfactualExplainer, CounterfactualResult
from ...counterfactual.baseline import BASELINE_NAME
from ...distributed import Ranks
from ...subspaces.core import Semantic
from ..settings import AuditSettings

__all__ = ["AuditContext", "Shard", "Summary", "Stage", "frame_state", "frame_of"]


@dataclass
class AuditContext:
    """What every stage of one audit works with.

    Attributes:
        explainer: the counterfactual explainer (generator, classifier, subspaces, search settings).
        names: the audited semantics (the subspaces with at least one direction).
        target: the decision change sought.
        settings: the audit's settings.
        semantics: the :class:`Semantic` objects of the subspaces (their keep criteria), where known.
        ranks: the processes of a distributed audit (one otherwise).
    """

    explainer: CounterfactualExplainer
    names: list[str]
    target: Any
    settings: AuditSettings
    semantics: tuple[Semantic, ...]
    ranks: Ranks
    checkpoint_dir: str | os.PathLike | None = None


@dataclass
class Shard:
    """Some of the audit's faces (all of them in a single process) and their per-semantic search:
    faces ``first_face, first_face + 1, …`` of the audit."""

    codes: torch.Tensor
    search: CounterfactualResult
    first_face: int = 0


@dataclass
class Summary:
    """The audit being assembled from the gathered parts (in the process that holds them).

    Attributes:
        names: the audited semantics, in table order before ranking.
        search: the per-semantic search over all faces (latent-gradient items included).
        faces: the number of faces of each process's part, in order.
        columns: per column, one value per semantic (in ``names`` order).
        metrics: the audit's metrics.
        joint: the joint search's per-face table; baseline: the latent-gradient control's row.
        edits: per subspace searched (semantics and the control's), the ``(faces,)`` minimal
            edits, ``inf`` beyond the budget: what the evidence is computed from.
        control: per semantic, the names of its control's subspaces.
    """

    names: list[str]
    search: CounterfactualResult
    faces: list[int]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    joint: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline: pd.DataFrame = field(default_factory=pd.DataFrame)
    edits: dict[str, np.ndarray] = field(default_factory=dict)
    control: dict[str, list[str]] = field(default_factory=dict)

    @property
    def items(self) -> pd.DataFrame:
        """The per-semantic search's items, without the latent-gradient control's."""
        table = self.search.table
        return table[table["subspace"] != BASELINE_NAME]


class Stage(ABC):
    """One part of an audit (module docstring). Subclasses set :attr:`name` (the checkpoint's key),
    :attr:`columns` (the declared columns, :mod:`cfexplain.audit.columns`, that they compute) and
    :attr:`title`."""

    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str] = ""
    """What the stage does, for the status line before it runs (empty: it only summarises)."""

    def __init__(self, context: AuditContext) -> None:
        self.context = context

    def prepare(self) -> None:
        """Work before the searches, done alike in every process (default: none)."""

    def run(self, shard: Shard) -> Any:
        """This process's part on its faces, as plain data (default: none; the stage then only
        summarises what the search found)."""
        return None

    def summarise(self, parts: Sequence[Any], summary: Summary) -> None:
        """Add this stage's columns, metrics and tables to ``summary`` from every process's part."""
        raise NotImplementedError


def frame_state(frame: pd.DataFrame) -> dict[str, Any]:
    """A table as plain lists (for a checkpoint read with ``weights_only``)."""
    return {"columns": list(frame.columns), "data": frame.to_dict(orient="list")}


def frame_of(state: dict[str, Any]) -> pd.DataFrame:
    """The table of :func:`frame_state`."""
    return pd.DataFrame(state["data"], columns=state["columns"])
