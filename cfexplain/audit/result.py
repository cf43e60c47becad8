"""The outcome of an audit (:class:`AuditResult`): its table, searches, metrics and answer, saved
as JSON and tensors (nothing that can run code)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._integrity import seal, verify
from .._io import atomic_write, read_versioned_json, reading_document
from ..counterfactual import CounterfactualResult
from .columns import COLUMNS, TABLE_COLUMNS
from .evidence import EVIDENCE
from .summary import describe, headline

__all__ = ["AuditResult", "AUDIT_FORMAT_VERSION"]

AUDIT_FORMAT_VERSION = 3
FEW_PHOTOS = 5
"""Below this many counted photos, an audit's summary warns that its rates are anecdotes."""


@dataclass
class AuditResult:
    """The outcome of :func:`~cfexplain.audit.audit`.

    Attributes:
        table: one row per semantic (the columns of :data:`~cfexplain.audit.COLUMNS`, in that
            order), sorted by ``rank``, then by ``effect``.
        counterfactuals: the per-semantic search (:class:`CounterfactualResult`).
        joint: one row per face of the joint search (``flipped, min_edit, sparsity`` = the number of
            semantics it needs, ``semantics_used``, and the coefficient norm per semantic).
        metrics: the metrics of :data:`~cfexplain.audit.METRICS`.
        target: the target, in words; settings: the audit's and the search's settings;
            provenance: versions, generator, classifier, subspaces.
        baseline: the unconstrained control (one row, ``semantic`` = ``"latent_gradient"``, the
            table's search columns; empty when not run): each face's search along its own latent
            gradient in the whole space, with ``side_effect`` over the keep criteria of all
            semantics together. Not ranked and not tested.
    """

    table: pd.DataFrame
    counterfactuals: CounterfactualResult
    joint: pd.DataFrame
    metrics: dict[str, float]
    target: str
    settings: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    baseline: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dataframe(self) -> pd.DataFrame:
        """The per-semantic table."""
        return self.table.copy()

    def ranking(self) -> list[str]:
        """Semantics from the one the decision reacts to most easily to the least (semantics that
        share a rank in table order: by effect)."""
        return list(self.table["semantic"])

    def verdict(self, semantic: str) -> str:
        """The verdict of ``semantic`` (``evidence``, ``no evidence``, ``cannot tell`` or ``not tested``)."""
        rows = self.table.loc[self.table["semantic"] == semantic, "verdict"]
        if rows.empty:
            raise KeyError(f"no semantic {semantic!r} in this audit; it has {list(self.table['semantic'])}")
        return str(rows.iloc[0])

    @property
    def evidence(self) -> list[str]:
        """The semantics whose verdict is ``evidence``, by rank."""
        return list(self.table.loc[self.table["verdict"] == EVIDENCE, "semantic"])

    @property
    def nothing_flipped(self) -> bool:
        """Whether no semantic flipped any face within the budget."""
        return bool((self.table["flip_rate"] == 0).all())

    def headline(self) -> str:
        """The answer in one line."""
        return headline(self)

    def summary(self) -> str:
        """The answer in a few sentences, with its evidence and its controls; an audit of fewer than
        :data:`FEW_PHOTOS` photos says first that its rates are anecdotes."""
        return self._anecdote_note() + describe(self) + self._photo_note()

    def _anecdote_note(self) -> str:
        photos = getattr(self.counterfactuals, "photos", None)
        counted = int(self.settings.get("n") or 0)
        if photos is None or counted >= FEW_PHOTOS:
            return ""
        return (f"Only {counted} photo{'' if counted == 1 else 's'} counted: the rates below describe "
                f"{'this photo' if counted == 1 else 'these photos'}, not the classifier (anecdotes, not estimates; "
                f"the evidence test needs many faces). ")

    def _photo_note(self) -> str:
        """For photo audits: how many photos passed the faithfulness gate, and which the table uses."""
        photos = getattr(self.counterfactuals, "photos", None)
        if photos is None:
            return ""
        used = "all of them, unfaithful ones included" if self.settings.get("include_unfaithful") else \
            "the faithful ones only"
        return f" Photos: {photos.summary()}; the table uses {used}."

    def to_dict(self) -> dict[str, Any]:
        """JSON-able content (format version :data:`AUDIT_FORMAT_VERSION`)."""
        def records(frame: pd.DataFrame) -> list[dict]:
            return json.loads(frame.to_json(orient="records"))

        return {"format_version": AUDIT_FORMAT_VERSION, "target": self.target, "settings": self.settings,
                "provenance": self.provenance, "answer": self.headline(),
                "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.metrics.items()},
                "semantics": records(self.table), "joint": records(self.joint),
                "items": records(self.counterfactuals.table), "baseline": records(self.baseline)}

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text, sealed with its integrity manifest (an edited or
        damaged ``audit.json`` is refused on load)."""
        return json.dumps(seal(self.to_dict(), {}), indent=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``audit.json``, ``table.csv`` and the counterfactuals (``counterfactuals/``) to a folder."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.counterfactuals.save(folder / "counterfactuals")
        text, csv = self.to_json(), self.table.to_csv(index=False)
        atomic_write(folder / "table.csv", lambda tmp: tmp.write_text(csv))
        atomic_write(folder / "audit.json", lambda tmp: tmp.write_text(text))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AuditResult":
        """Read an audit written by :meth:`save` (JSON and ``torch.load(weights_only=True)``: no code runs)."""
        folder = Path(path)
        data = read_versioned_json(folder / "audit.json", AUDIT_FORMAT_VERSION, "audit")
        verify(data, {}, folder / "audit.json", "audit")
        counterfactuals = CounterfactualResult.load(folder / "counterfactuals")
        with reading_document(folder / "audit.json", "audit"):
            table = _numeric(pd.DataFrame(data["semantics"]), [c for c in TABLE_COLUMNS if c not in _TEXT])
            metrics = {str(k): float("nan") if v is None else float(v) for k, v in data["metrics"].items()}
            if not isinstance(data["settings"], dict) or not isinstance(data["provenance"], dict):
                raise TypeError("settings and provenance must be objects")
            _check_read(table, data["settings"])
            return cls(table, counterfactuals, pd.DataFrame(data["joint"]), metrics, data["target"], data["settings"],
                       data["provenance"], pd.DataFrame(data.get("baseline", [])))


_TEXT = ("semantic", "verdict", "reason")
_NUMERIC_SETTINGS = ("budget", "alpha", "n", "controls")


def _check_read(table: pd.DataFrame, settings: dict[str, Any]) -> None:
    """The entries the answer in words reads: every row with every column the table always has
    (the sigmoid-only and black-box-only ones aside), text where text belongs, the numeric settings (present, finite
    numbers) and the unit (text)."""
    always = [c.name for c in COLUMNS if c.when not in ("sigmoid", "black_box")]
    missing = [name for name in always if name not in table]
    if missing:
        raise KeyError(f"the semantics' rows lack {missing}")
    for name in _TEXT:
        if not table[name].map(lambda v: isinstance(v, str)).all():
            raise TypeError(f"the column {name!r} must hold text")
    for name in _NUMERIC_SETTINGS:
        if name not in settings:
            raise KeyError(f"the setting {name!r} is missing")
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"the setting {name!r} must be a finite number, got {value!r}")
    if not isinstance(settings.get("unit"), str):
        raise TypeError("the setting 'unit' must be text")


def _numeric(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` read as numbers (JSON's null as NaN)."""
    for name in columns:
        if name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float) if frame[name].dtype == object \
                else frame[name]
    return frame

