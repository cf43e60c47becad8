"""The audit: which semantics a classifier's decision depends on, with the evidence for each claim.

:func:`audit` draws faces (or takes photos), searches a counterfactual of every face in every
subspace, and runs its stages (:mod:`cfexplain.audit.stages`): the same search in an ensemble of
random subspaces of each dimension (the control), the test of every semantic against it, face by
face (:mod:`cfexplain.audit.evidence`), the joint search over all subspaces with its
Integrated-Gradients attribution, the side effects, and the unconstrained latent-gradient control.

The table (:attr:`AuditResult.table`) has one row per semantic, with the columns declared in
:data:`COLUMNS` (:mod:`cfexplain.audit.columns`); its ``verdict`` says what the audit can claim:
``evidence``, ``no evidence`` or ``cannot tell``. :meth:`AuditResult.summary` gives the answer in
words. ``docs/audit.md`` describes the method and the measurements behind it.
"""

from __future__ import annotations

from .columns import COLUMNS, METRICS, TABLE_COLUMNS, Column, Metric
from .core import MissingSemanticsWarning, audit
from .evidence import CANNOT_TELL, EVIDENCE, NO_EVIDENCE, NOT_TESTED, VERDICTS
from .result import AUDIT_FORMAT_VERSION, AuditResult
from .settings import AuditSettings

__all__ = ["AUDIT_FORMAT_VERSION", "AuditResult", "AuditSettings", "CANNOT_TELL", "COLUMNS", "Column", "EVIDENCE",
           "METRICS", "Metric", "MissingSemanticsWarning", "NOT_TESTED", "NO_EVIDENCE", "TABLE_COLUMNS", "VERDICTS", "audit"]
