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

from .._lazy import lazy_attributes

__all__ = ["AUDIT_FORMAT_VERSION", "AuditResult", "AuditSettings", "CANNOT_TELL", "COLUMNS", "Column", "EVIDENCE",
           "METRICS", "Metric", "MissingSemanticsWarning", "NOT_TESTED", "NO_EVIDENCE", "TABLE_COLUMNS", "VERDICTS", "audit"]

__getattr__, __dir__ = lazy_attributes(__name__, {
    "COLUMNS": ".columns",
    "METRICS": ".columns",
    "TABLE_COLUMNS": ".columns",
    "Column": ".columns",
    "Metric": ".columns",
    "MissingSemanticsWarning": ".core",
    "audit": ".core",
    "CANNOT_TELL": ".evidence",
    "EVIDENCE": ".evidence",
    "NO_EVIDENCE": ".evidence",
    "NOT_TESTED": ".evidence",
    "VERDICTS": ".evidence",
    "AUDIT_FORMAT_VERSION": ".result",
    "AuditResult": ".result",
    "AuditSettings": ".settings",
})
