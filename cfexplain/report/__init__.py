"""Reports of audits: a self-contained HTML page, ``results.json`` (versioned schema), ``table.csv``."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__
from .._io import atomic_write
from ..audit.columns import COLUMNS, schema_properties
from ..generators.base import Generator
from ..subspaces.core import SubspaceSet
from .html import ReportSection, render_report

__all__ = ["RESULTS_FORMAT_VERSION", "ReportSection", "load_results_schema", "render_report", "results_document",
           "write_report"]

RESULTS_FORMAT_VERSION = 3


def load_results_schema() -> dict:
    """The JSON Schema (draft 2020-12) that ``results.json`` follows: the file beside this module, with
    a semantic row's properties made from the audit's column declarations
    (:func:`cfexplain.audit.columns.schema_properties`)."""
    schema = json.loads(resources.files(__package__).joinpath("results.schema.json").read_text())
    schema["$defs"]["semantic"] = {"type": "object", "properties": schema_properties(),
                                   "required": [c.name for c in COLUMNS if c.when == "always"]}
    return schema


def results_document(sections: Sequence[ReportSection], subspaces: SubspaceSet,
                     config: Mapping[str, Any] | None = None) -> dict:
    """The content of ``results.json`` for these audits (see :func:`load_results_schema`)."""
    return {"format_version": RESULTS_FORMAT_VERSION, "cfexplain": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "subspaces": json.loads(json.dumps(subspaces.provenance, default=str)),
            "config": json.loads(json.dumps(dict(config or {}), default=str)),
            "audits": [{"title": s.title, **s.audit.to_dict()} for s in sections]}


def write_report(out: str | os.PathLike, generator: Generator, subspaces: SubspaceSet, sections: Sequence[ReportSection], *,
                 title: str = "cfexplain audit", config: Mapping[str, Any] | None = None,
                 progress: bool = False) -> dict[str, Path]:
    """Write ``report.html``, ``results.json`` and ``table.csv`` into the folder ``out``; returns their
    paths. ``table.csv`` is the audit's table, the same as :meth:`AuditResult.save` writes; with
    several audits, their tables one after the other, with an ``audit`` column first. ``progress``
    shows a bar while the report's images are drawn."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    page = render_report(generator, subspaces, sections, title=title, provenance={"config": dict(config or {})},
                         progress=progress)
    document = json.dumps(results_document(sections, subspaces, config), indent=1)
    if len(sections) == 1:
        table = sections[0].audit.table.to_csv(index=False)
    else:
        table = pd.concat([s.audit.table.assign(audit=s.title) for s in sections], ignore_index=True)
        table = table[["audit", *(c for c in table.columns if c != "audit")]].to_csv(index=False)
    paths = {"report": folder / "report.html", "results": folder / "results.json", "table": folder / "table.csv"}
    atomic_write(paths["report"], lambda tmp: tmp.write_text(page, encoding="utf-8"))
    atomic_write(paths["results"], lambda tmp: tmp.write_text(document))
    atomic_write(paths["table"], lambda tmp: tmp.write_text(table))
    return paths
