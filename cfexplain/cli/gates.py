"""``--fail-if`` conditions: gates on an audit's verdicts, table and metrics for CI pipelines.

A condition is one of:

* ``verdict[semantic]`` with ``verdict`` one of ``evidence``, ``no_evidence``, ``cannot_tell``:
  holds when the semantic's verdict is that one (``evidence[face_colour]``: fail when the audit
  finds evidence that the classifier uses face colour). ``evidence[*]`` holds when any semantic's does;
* ``column[semantic] OP number``: a cell of the audit table, e.g. ``flip_rate[hair_photometry] >
  0.2``, ``rank[lip_colour] <= 2``;
* ``metric OP number``: an audit metric, e.g. ``validity > 0.5``;

with ``OP`` one of ``> >= < <= == !=`` and a finite number. A condition holds when it is true (a
NaN value never holds); a run with any holding condition exits with code 1. Columns and metrics are
those declared in :mod:`cfexplain.audit.columns`, checked before any work.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..audit import AuditResult
from ..audit.columns import check_gate_target
from ..errors import InputError

__all__ = ["Gate", "VERDICT_GATES", "parse_gate", "check_gates", "failed_gates"]

_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
              "!=": operator.ne}
_COMPARISON = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\[\s*([^\]]+?)\s*\])?\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_VERDICT = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[\s*([^\]]+?)\s*\]\s*$")
VERDICT_GATES = {"evidence": "evidence", "no_evidence": "no evidence", "cannot_tell": "cannot tell"}
"""The verdict predicates of ``--fail-if`` and the verdicts they match."""
ANY_SEMANTIC = "*"


@dataclass(frozen=True)
class Gate:
    """One parsed condition: a comparison (``op`` and ``value``) or a verdict predicate (``verdict``)."""

    text: str
    column: str
    semantic: str | None
    op: str | None = None
    value: float | None = None
    verdict: str | None = None

    def value_in(self, result: AuditResult) -> float:
        """The audited value the condition compares (for a verdict predicate: 1 where it holds, else 0)."""
        if self.verdict is not None:
            verdicts = result.table.set_index("semantic")["verdict"]
            chosen = verdicts if self.semantic == ANY_SEMANTIC else verdicts.loc[[self._semantic_in(result)]]
            return float((chosen == self.verdict).any())
        if self.semantic is None:
            value = result.metrics.get(self.column)
            return float("nan") if value is None else float(value)
        return float(result.table.set_index("semantic").loc[self._semantic_in(result), self.column])

    def _semantic_in(self, result: AuditResult) -> str:
        if self.semantic not in set(result.table["semantic"]):
            raise InputError(f"--fail-if {self.text!r}: no semantic {self.semantic!r}; semantics: "
                             f"{list(result.table['semantic'])}")
        return str(self.semantic)

    def holds(self, result: AuditResult) -> bool:
        """Whether the condition holds for ``result`` (a NaN value never does)."""
        value = self.value_in(result)
        if self.verdict is not None:
            return value == 1.0
        return not math.isnan(value) and _OPERATORS[self.op](value, self.value)

    def describe(self, value: float) -> str:
        """The failed condition with what it found, for the gate-failed line."""
        return f"{self.text} (verdict {self.verdict})" if self.verdict is not None else f"{self.text} (value {value:.4g})"


def parse_gate(text: str) -> Gate:
    """Parse a condition (module docstring)."""
    verdict = _VERDICT.match(text)
    if verdict:
        name, semantic = verdict.groups()
        if name not in VERDICT_GATES:
            raise InputError(f"cannot read the condition {text!r}: {name}[…] without a comparison must be a verdict, "
                             f"one of {sorted(VERDICT_GATES)} (e.g. 'evidence[face_colour]')")
        return Gate(text.strip(), name, semantic, verdict=VERDICT_GATES[name])
    match = _COMPARISON.match(text)
    if not match:
        raise InputError(f"cannot read the condition {text!r}: expected e.g. 'evidence[face_colour]', "
                         "'flip_rate[hair_photometry] > 0.2' or 'validity < 0.5'")
    column, semantic, op, number = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"--fail-if {text!r}: {number!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"--fail-if {text!r}: the threshold must be a finite number (a comparison with {number} "
                         "never holds)")
    return Gate(text.strip(), column, semantic, op, value)


def check_gates(gates: Sequence[Gate], semantics: Sequence[str], *, kind: str | None = None,
                controls: int | None = None) -> None:
    """Refuse, before any work, conditions on a semantic the audit will not have, or on a column or
    metric that is not declared (or that holds nothing for this classifier ``kind`` or control)."""
    for gate in gates:
        if gate.semantic is not None and gate.semantic != ANY_SEMANTIC and gate.semantic not in semantics:
            raise InputError(f"--fail-if {gate.text!r}: no semantic {gate.semantic!r}; semantics: {list(semantics)}")
        if gate.semantic == ANY_SEMANTIC and gate.verdict is None:
            raise InputError(f"--fail-if {gate.text!r}: [*] applies to verdicts only (e.g. 'evidence[*]')")
        if gate.verdict is not None:
            if controls == 0:
                raise InputError(f"--fail-if {gate.text!r}: verdicts need the random control, and the audit runs "
                                 "without it")
            continue
        try:
            check_gate_target(gate.column, per_semantic=gate.semantic is not None, kind=kind, controls=controls)
        except InputError as exc:
            raise InputError(f"--fail-if {gate.text!r}: {exc}") from None


def failed_gates(gates: Sequence[Gate], result: AuditResult) -> list[tuple[Gate, float]]:
    """The conditions that hold, with the value each compared."""
    return [(gate, gate.value_in(result)) for gate in gates if gate.holds(result)]
