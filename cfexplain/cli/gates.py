"""``--fail-if`` conditions: gates on an audit's table and metrics for CI pipelines.

A condition is ``column[semantic] OP number`` (a cell of the audit table, e.g.
``flip_rate[hair_photometry] > 0.2``, ``rank[lip_colour] <= 2``) or ``metric OP number`` (an audit
metric, e.g. ``validity > 0.5``), with ``OP`` one of ``> >= < <= == !=``. A condition holds when
the comparison is true; a run with any holding condition exits with code 1.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from ..audit import TABLE_COLUMNS, AuditResult
from ..errors import InputError

__all__ = ["Gate", "parse_gate", "check_gates", "failed_gates"]

_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
              "!=": operator.ne}
_PATTERN = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(?:\[\s*([^\]]+?)\s*\])?\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+|nan)\s*$")


@dataclass(frozen=True)
class Gate:
    """One parsed condition."""

    text: str
    column: str
    semantic: str | None
    op: str
    value: float

    def value_in(self, result: AuditResult) -> float:
        """The audited value the condition compares."""
        if self.semantic is None:
            if self.column not in result.metrics:
                raise InputError(f"--fail-if {self.text!r}: no metric {self.column!r}; metrics: {sorted(result.metrics)}")
            value = result.metrics[self.column]
            return float("nan") if value is None else float(value)
        table = result.table.set_index("semantic")
        if self.column not in table.columns:
            raise InputError(f"--fail-if {self.text!r}: no column {self.column!r}; columns: {list(table.columns)}")
        if self.semantic not in table.index:
            raise InputError(f"--fail-if {self.text!r}: no semantic {self.semantic!r}; semantics: {list(table.index)}")
        return float(table.loc[self.semantic, self.column])

    def holds(self, result: AuditResult) -> bool:
        """Whether the condition holds for ``result`` (a NaN value never does)."""
        value = self.value_in(result)
        return not math.isnan(value) and _OPERATORS[self.op](value, self.value)


def parse_gate(text: str) -> Gate:
    """Parse ``column[semantic] OP number`` or ``metric OP number``."""
    match = _PATTERN.match(text)
    if not match:
        raise InputError(f"cannot read the condition {text!r}: expected e.g. 'flip_rate[hair_photometry] > 0.2' "
                         "or 'validity < 0.5'")
    column, semantic, op, value = match.groups()
    return Gate(text.strip(), column, semantic, op, float(value))


def check_gates(gates: list[Gate], semantics: list[str]) -> None:
    """Refuse, before any work, conditions on a semantic the audit will not have or on an unknown column."""
    columns = TABLE_COLUMNS
    for gate in gates:
        if gate.semantic is None:
            continue
        if gate.column not in columns:
            raise InputError(f"--fail-if {gate.text!r}: no column {gate.column!r}; columns: {list(columns)}")
        if gate.semantic not in semantics:
            raise InputError(f"--fail-if {gate.text!r}: no semantic {gate.semantic!r}; semantics: {semantics}")


def failed_gates(gates: list[Gate], result: AuditResult) -> list[tuple[Gate, float]]:
    """The conditions that hold, with the value each compared."""
    return [(gate, gate.value_in(result)) for gate in gates if gate.holds(result)]
