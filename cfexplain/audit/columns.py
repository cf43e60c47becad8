"""The audit table's columns and metrics, each declared once.

Every column of :attr:`AuditResult.table <cfexplain.audit.AuditResult.table>` is one
:class:`Column` in :data:`COLUMNS`, in table order, and every metric of ``AuditResult.metrics`` one
:class:`Metric` in :data:`METRICS`. The declarations build the table's order, the report's table,
the ``results.json`` schema, the column table of ``docs/audit.md`` (:func:`markdown_table`) and the
check of ``--fail-if`` gates before any work (:func:`check_gate_target`). The audit's stages say
which columns they compute (:mod:`cfexplain.audit.stages`); a test checks that each declared column
is computed by exactly one stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .evidence import VERDICTS

__all__ = ["Column", "Metric", "COLUMNS", "IG_TRUSTED_ERROR", "METRICS", "TABLE_COLUMNS", "WHEN", "column", "check_gate_target",
           "markdown_table", "schema_properties"]

WHEN: dict[str, str] = {
    "always": "",
    "control": "needs the random control (`controls` ≥ 1)",
    "sigmoid": "sigmoid (multi-label) classifiers only",
    "semantics": "needs the semantics (`semantics=`, or subspaces that carry them)",
    "joint": "needs the joint search with attribution",
    "black_box": "black-box audits only (`black_box`, or a classifier without gradients)",
}
"""When a column or metric holds values, in words (its ``when`` key)."""


@dataclass(frozen=True)
class Column:
    """One column of the audit table.

    Attributes:
        name: the column's name.
        meaning: what it holds, in one or two sentences (docs and the report's header tooltips).
        dtype: ``"str"``, ``"int"``, ``"float"`` or ``"rate"`` (a float in [0, 1]).
        label: the report table's header.
        format: how the report prints a value (a ``str.format`` pattern; ``""`` for strings).
        when: when it holds values (a key of the docs' list: ``"always"``, ``"control"``,
            ``"sigmoid"``, ``"semantics"``, ``"joint"``); otherwise it is NaN (or absent for ``"sigmoid"``).
        gate: whether ``--fail-if`` conditions may compare it.
        report: whether the report's main table shows it.
    """

    name: str
    meaning: str
    dtype: str
    label: str
    format: str = "{:.3g}"
    when: str = "always"
    gate: bool = True
    report: bool = True

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of one value of the column (NaN is written as null)."""
        if self.dtype == "str":
            return {"type": "string"}
        if self.dtype == "int":
            return {"type": ["integer", "null"], "minimum": 1} if self.name.endswith("rank") else {"type": "integer"}
        if self.dtype == "rate":
            return {"type": ["number", "null"], "minimum": 0, "maximum": 1}
        return {"type": ["number", "null"]}


@dataclass(frozen=True)
class Metric:
    """One entry of ``AuditResult.metrics``: its name, its label in reports, its meaning and when it
    holds a value."""

    name: str
    label: str
    meaning: str
    when: str = "always"


COLUMNS: tuple[Column, ...] = (
    Column("semantic", "the subspace's name", "str", "semantic", "", gate=False),
    Column("verdict", "`evidence`: the decision reacts to the semantic more easily than to random edits of the same "
           "size (significant after Holm's correction) and than to every other semantic, face by face, and its subspace "
           "is specific; `no evidence`; `cannot tell`: the subspace is not specific enough for its result to mean "
           "anything, or the semantic cannot be told apart from one that is not; `not tested`: the audit ran without "
           "its random control", "str", "verdict", "", gate=False),
    Column("rank", "1 + the number of semantics that flip the decision with less image change on significantly more "
           "faces (a paired sign test robust to any two faces): semantics no test separates share a rank", "int",
           "rank", "{:d}"),
    Column("effect", "probability that the semantic flips the decision with less image change than a random subspace "
           "of its dimension on the same face (0.5: like random; mean over faces, against every subspace of the "
           "control)", "rate", "effect", "{:.2f}", when="control"),
    Column("effect_low", "lower end of the effect's 95 % interval over the faces", "rate", "95 % low", "{:.2f}",
           when="control"),
    Column("effect_high", "upper end of the effect's 95 % interval over the faces", "rate", "95 % high", "{:.2f}",
           when="control"),
    Column("p_value", "one-sided exact p-value of the effect against the control (the semantic as one more random "
           "subspace), the largest over leaving any one face out, Holm-adjusted across the semantics", "rate",
           "p (Holm)", "{:.2g}", when="control"),
    Column("edit_ratio", "the control's median minimal edit over the semantic's (> 1: the semantic needs less image "
           "change; inf when only the semantic's median is within the budget)", "float", "edit ratio", "{:.2f}",
           when="control"),
    Column("reason", "why the verdict is what it is, in words", "str", "why", "", gate=False, report=False),
    Column("flip_rate", "fraction of faces whose decision the semantic flips within the budget", "rate", "flip rate",
           "{:.0%}"),
    Column("median_min_edit", "median minimal edit of the flipped faces, in the audit's unit (default: RMS image "
           "change): the typical distance to the decision boundary along the semantic (NaN when nothing flips)",
           "float", "median minimal edit", "{:.3f}"),
    Column("sensitivity", "median over faces of `‖∇_α gap‖` at the face: how far the decision gap (logits) moves per "
           "unit edit in the best direction of the subspace, to first order (a black-box audit estimates the "
           "gradient by forward differences)", "float", "sensitivity", "{:.1f}"),
    Column("mean_delta_prob", "mean change of the target probability where the searches stopped", "float",
           "mean Δ target prob.", "{:+.3f}"),
    Column("random_flip_rate", "the flip rate of the random control: every random subspace of the semantic's "
           "dimension on the same faces, with the same unit, budget and search", "rate", "random flip rate",
           "{:.0%}", when="control"),
    Column("random_median_min_edit", "the control's median minimal edit over its flipped items", "float",
           "random minimal edit", "{:.3f}", when="control"),
    Column("random_sensitivity", "the control's median sensitivity", "float", "random sensitivity", "{:.1f}",
           when="control"),
    Column("directions", "the subspace's dimension", "int", "directions", "{:d}"),
    Column("specificity", "the subspace's specificity against random directions, as `learn` measured it (1 = "
           "random; NaN when it was not measured); below 1.5, or with its interval reaching 1, the verdict is "
           "`cannot tell`", "float", "specificity", "{:.2f}"),
    Column("side_effect", "median over flipped faces of how much the semantic's keep-invariant criteria moved in the "
           "minimal counterfactual, relative to a random edit of the same latent size (0 = untouched, 1 = as much as "
           "a random edit)", "float", "side effect", "{:.2f}", when="semantics"),
    Column("other_heads_flipped", "mean number of other heads that flipped (MNAC)", "float", "other heads flipped",
           "{:.2f}", when="sigmoid"),
    Column("median_queries", "median classifier queries per counterfactual of the semantic (its search and its "
           "minimal-edit root search; each query is one image)", "float", "queries", "{:.0f}", when="black_box"),
    Column("attribution", "share of the joint counterfactuals' decision change that the attribution gives the "
           "semantic (Integrated Gradients; a black-box audit: Shapley values over the semantics; faces the joint "
           "search flips, weighted by their decision change); shares closer than about 0.015 do not order the "
           "semantics", "float", "attribution", "{:.1%}", when="joint"),
    Column("attribution_rank", "the ranking by attribution, a second view", "int",
           "attribution rank", "{:d}", when="joint", report=False),
)
"""The audit table's columns, in table order."""

TABLE_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS)
"""The names of :data:`COLUMNS`, in table order."""

IG_TRUSTED_ERROR = 0.1
"""The largest ``ig_relative_convergence_delta`` (Integrated Gradients' completeness error relative
to the attributed change) at which the attribution is shown as it is; above it, the report flags
it as untrustworthy (more ``ig_steps`` usually bring the error down)."""

METRICS: tuple[Metric, ...] = (
    Metric("validity", "faces × semantics flipped", "fraction of face × semantic items flipped"),
    Metric("proximity_std_units", "mean minimal edit",
           "mean minimal edit of flipped items, in the audit's unit (the name is historical)"),
    Metric("proximity_latent_l1", "latent change (L1)", "mean L1 norm of the latent change of flipped items"),
    Metric("proximity_latent_l2", "latent change (L2)", "mean L2 norm of the latent change of flipped items"),
    Metric("proximity_pixel_l1", "image change (L1)",
           "mean L1 image change of flipped items at the minimal counterfactual"),
    Metric("proximity_pixel_l2", "image change (RMS)",
           "mean L2 (RMS) image change of flipped items at the minimal counterfactual"),
    Metric("detectable_effect", "smallest detectable effect",
           "the smallest effect the audit's faces can show as evidence (at Holm's strictest level, one face left "
           "out): with more faces it falls", "control"),
    Metric("semantics_with_evidence", "semantics with evidence", "the number of semantics whose verdict is `evidence`",
           "control"),
    Metric("median_queries", "classifier queries per counterfactual",
           "median classifier queries per counterfactual over every semantic's searches", "black_box"),
    Metric("joint_validity", "faces the joint search flips", "fraction of faces the joint search flips", "joint"),
    Metric("joint_median_min_edit", "joint search: median minimal edit",
           "median minimal edit of the joint counterfactuals", "joint"),
    Metric("joint_sparsity", "joint search: semantics per counterfactual",
           "mean number of semantics a flipped face's joint counterfactual needs", "joint"),
    Metric("ig_relative_convergence_delta", "attribution error (IG completeness)",
           "Integrated Gradients' completeness error relative to the attributed change (small = trustworthy "
           f"attributions; above {IG_TRUSTED_ERROR:g} the report flags the attribution)", "joint"),
    Metric("shapley_relative_delta", "attribution error (Shapley efficiency)",
           "a black-box audit's Shapley values: their sum's difference from the joint change, relative to it (0 up "
           "to rounding: exact values and values averaged over orders both add up to the change; a check, which the "
           f"report flags above {IG_TRUSTED_ERROR:g})", "joint"),
)
"""The audit's metrics."""

_BY_NAME = {c.name: c for c in COLUMNS}


def column(name: str) -> Column:
    """The declared column ``name``."""
    return _BY_NAME[name]


def check_gate_target(name: str, *, per_semantic: bool, kind: str | None = None, controls: int | None = None) -> None:
    """Refuse a gate on an undeclared column or metric (or on a column that holds no values for
    this classifier kind or control), naming what there is: called before any work."""
    if per_semantic:
        gateable = [c.name for c in COLUMNS if c.gate]
        if name not in gateable:
            raise InputError(f"no column {name!r} to gate on; columns: {gateable}")
        declared = column(name)
        if kind is not None and declared.when == "sigmoid" and kind != "sigmoid":
            raise InputError(f"the column {name!r} holds values for sigmoid classifiers only; this one is {kind}")
        if controls is not None and declared.when == "control" and controls < 1:
            raise InputError(f"the column {name!r} needs the random control, and the audit runs without it")
        return
    names = [m.name for m in METRICS]
    if name not in names:
        raise InputError(f"no metric {name!r} to gate on; metrics: {names}")


def schema_properties() -> dict[str, dict[str, Any]]:
    """The JSON schema of a table row's properties, by column."""
    properties = {c.name: c.json_schema() for c in COLUMNS}
    properties["verdict"] = {"enum": list(VERDICTS)}
    return properties


def markdown_table(columns: Sequence[Column] = COLUMNS) -> str:
    """The column table of ``docs/audit.md`` (generated; a test keeps the docs in step)."""
    lines = ["| column | meaning | when |", "|---|---|---|"]
    for c in columns:
        lines.append(f"| `{c.name}` | {c.meaning} | {WHEN[c.when]} |")
    return "\n".join(lines)
