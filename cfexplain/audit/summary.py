"""The audit's answer in words: a headline and a few sentences that say no more than the evidence.

The answer names the semantics whose verdict is ``evidence``, each with its effect and interval;
says plainly when there is none; names the semantics the decision reacts to whose subspaces are
not specific enough to tell (``cannot tell``); and puts the controls beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .evidence import CANNOT_TELL, EVIDENCE, NO_EVIDENCE, NOT_TESTED

if TYPE_CHECKING:
    from .result import AuditResult

__all__ = ["headline", "describe"]

NO_SEMANTIC = "no semantic moves the decision more easily than a random edit of the same size"
NOTHING_CAPTURES = "the decision depends on something none of these semantics captures"


def _size(result: AuditResult) -> str:
    budget = result.settings.get("budget")
    if result.settings.get("unit", "image") == "image":
        return f"an RMS image change of {budget:g}"
    return f"{budget:g} standard deviations"


def _ordered(result: AuditResult, verdict: str) -> pd.DataFrame:
    table = result.table[result.table["verdict"] == verdict]
    return table.sort_values(["rank", "effect"], ascending=[True, False], kind="stable")


def _claim(row: pd.Series) -> str:
    ratio = row["edit_ratio"]
    needs = (f", needing {ratio:.1f}× less image change" if np.isfinite(ratio) and ratio > 1
             else ", flipping faces the random edits do not flip within the budget" if np.isinf(ratio) else "")
    return (f"{row['semantic']} (easier than a random edit in {row['effect']:.0%} of face-by-face comparisons, "
            f"95 % interval {row['effect_low']:.0%}–{row['effect_high']:.0%}, p = {row['p_value']:.2g}{needs})")


def _reacting(result: AuditResult, verdict: str) -> list[str]:
    """The semantics with ``verdict`` that the decision reacts to more easily than to random edits."""
    alpha = float(result.settings.get("alpha", 0.05))
    rows = _ordered(result, verdict)
    return [str(row["semantic"]) for _, row in rows.iterrows() if row["p_value"] < alpha]


def headline(result: AuditResult) -> str:
    """The answer in one line (the report's and the command line's first sentence)."""
    if result.nothing_flipped:
        return "Nothing flipped the decision within the budget: no evidence either way"
    if (result.table["verdict"] == NOT_TESTED).all():
        return "Not tested against random edits (the audit ran without its control): no claim"
    claimed = list(_ordered(result, EVIDENCE)["semantic"])
    if claimed:
        return f"Evidence that the decision depends on {', '.join(claimed)}"
    undecided = _reacting(result, CANNOT_TELL)
    if undecided:
        return (f"Cannot tell: the decision reacts to {', '.join(undecided)}, but the audit cannot tell which "
                "semantic it uses")
    alike = _reacting(result, NO_EVIDENCE)
    if alike:
        return (f"No evidence: the decision reacts to {', '.join(alike)} more easily than to random edits, but to "
                "none more than to the other semantics")
    return "No evidence: " + NO_SEMANTIC + ("; " + NOTHING_CAPTURES if _settled(result) else "")


def describe(result: AuditResult) -> str:
    """The answer in a few sentences, with its evidence and controls (``AuditResult.summary``)."""
    size = _size(result)
    if result.nothing_flipped:
        random = result.table["random_flip_rate"] if "random_flip_rate" in result.table else pd.Series(dtype=float)
        control = (f" (random edits of the same size flipped {float(random.mean()):.0%} of the faces)"
                   if random.notna().any() and float(random.mean()) > 0 else "")
        return (f"Nothing flipped the decision within the budget ({size}) for any semantic{control}, so the audit "
                "has no evidence either way; the sensitivity column (the decision's movement per unit edit, a "
                "first-order measure) is all it has; raise the budget to see flips.")
    if (result.table["verdict"] == NOT_TESTED).all():
        top = result.table.sort_values("rank", kind="stable")
        leaders = list(top.loc[top["rank"] == 1, "semantic"])
        return (f"Without the random control no semantic is tested against random edits, so the audit makes no "
                f"claim. Within {size}, {', '.join(leaders)} flip{'s' if len(leaders) == 1 else ''} the decision with "
                f"the least image change face by face (rank 1).")
    sentences = []
    claimed = _ordered(result, EVIDENCE)
    if len(claimed):
        sentences.append(f"Within {size}, the decision reacts more easily to "
                         + "; and to ".join(_claim(row) for _, row in claimed.iterrows())
                         + " than to random edits of the same size.")
    elif alike := _reacting(result, NO_EVIDENCE):
        sentences.append(f"Within {size}, the decision reacts to {', '.join(alike)} more "
                         "easily than to random edits of the same size, but to none of them more easily than to the "
                         "other semantics, face by face: no evidence that it uses one of these semantics (a "
                         "classifier that reacts to edits of the face in general looks like this).")
    else:
        sentences.append(NO_SEMANTIC[0].upper() + NO_SEMANTIC[1:] + "; " + (NOTHING_CAPTURES if _settled(result) else
                         "with more faces one might") + ".")
    undecided = _reacting(result, CANNOT_TELL)
    if undecided:
        table = result.table.set_index("semantic")
        sentences.append(" ".join(f"The decision also reacts to {name} more easily than to random edits, but "
                                  f"{table.loc[name, 'reason']}: cannot tell whether the classifier uses it."
                                  for name in undecided))
    sentences.append(_controls(result))
    return " ".join(sentences)


def _settled(result: AuditResult) -> bool:
    """Whether every semantic's effect interval lies below what the audit's faces can detect: more
    faces would not change the negative answer."""
    detectable = result.metrics.get("detectable_effect")
    if detectable is None or not np.isfinite(detectable):
        return False
    return bool((result.table["effect_high"] < detectable).all())


def _controls(result: AuditResult) -> str:
    """The controls and the audit's resolution, in a sentence."""
    table = result.table
    parts = []
    if "random_flip_rate" in table and table["random_flip_rate"].notna().any():
        parts.append(f"random subspaces flip {float(table['random_flip_rate'].mean()):.0%} of the faces within the "
                     "budget")
    if len(result.baseline):
        parts.append(f"the unconstrained latent gradient {float(result.baseline['flip_rate'].iloc[0]):.0%}")
    detectable = result.metrics.get("detectable_effect")
    faces = int(result.settings.get("n", 0))
    resolution = (f" With {faces} faces, effects below {detectable:.2f} cannot show as evidence."
                  if detectable is not None and np.isfinite(detectable) else "")
    return (f"Controls: {'; '.join(parts)}." if parts else "") + resolution
