"""The evidence behind an audit's answer: each semantic tested, face by face, against an ensemble of
random subspaces of its dimension.

On every face ``i`` the search gives each subspace a *minimal edit* ``e`` (the image change at which
the decision flips; ``+inf`` when it does not flip within the budget). For a semantic ``s`` and the
``R`` random subspaces ``r`` of its dimension, the face's score is the share of them the semantic
beats::

    q_i = mean_r [ 1(e_s,i < e_r,i) + ½ · 1(e_s,i = e_r,i) ]      (two edits beyond the budget tie)

* **effect** = mean_i q_i: the probability that the semantic flips the decision with less image
  change than a random edit of the same dimension, on the same face (0.5 = like random, 1 = easier
  on every face than every random subspace), with a 95 % t-interval over the faces.
* **the test** (one-sided): if the semantic were just another random subspace (exchangeable with
  the ensemble), on each face its edit would be equally likely to hold any of the ``R + 1`` places,
  independently across faces. The null distribution of ``Σ_i q_i`` is then the convolution of the
  faces' own place-score distributions (ties included), computed exactly; no sampling. To keep one
  face from deciding, the p-value is the largest over leaving any one face out (the face most in the
  semantic's favour). Holm's step-down corrects across the semantics.
* **dominance** (:func:`dominates`): semantic ``t`` beats ``s`` when ``t``'s edit is smaller on
  significantly more faces than the other way round (a sign test robust to any two faces: a claim
  rests on beating every other semantic, and one that two coin-flip items at the budget's edge
  could give was once a false claim on the planted suite).
* **the verdict** (:func:`verdicts`): ``evidence`` for a specific subspace that beats the control
  *and every other semantic*: the other semantics are structured edits of the same face, so a
  classifier that reacts to face edits in general (one trained on random labels does) beats the
  random control with several of them, but with none alone. ``cannot tell`` for a subspace whose
  specificity is low (its result would not mean anything); for a specific one level with such a
  subspace; and for one that may be standing in for such an untestable semantic ``u`` that the
  decision reacts to too (:func:`stands_in_for`): its edits move ``u``'s target as much as random
  edits do (the upper end ``g`` of its ``cross_gains`` interval, as ``learn`` measured it, at 1 or
  more), or they do not flip the decision more easily than ``u``'s own edits by more than the
  factor ``g / t`` (``t``: ``u``'s target gain) that a decision following ``u``'s target would give
  them. ``no evidence`` otherwise.

docs/audit.md ("How the answer is decided") gives the measurements on the planted suite that chose
these statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..subspaces.specificity import SemanticSpecificity

__all__ = ["EVIDENCE", "NO_EVIDENCE", "CANNOT_TELL", "NOT_TESTED", "VERDICTS", "SemanticTest", "beyond_budget",
           "face_scores", "compare_with_control", "holm", "FACES_LEFT_OUT", "dominates", "pairwise_dominance",
           "ranks_of", "detectable_effect", "stands_in_for", "Verdict", "verdicts"]

EVIDENCE, NO_EVIDENCE, CANNOT_TELL, NOT_TESTED = "evidence", "no evidence", "cannot tell", "not tested"
VERDICTS = (EVIDENCE, NO_EVIDENCE, CANNOT_TELL, NOT_TESTED)
"""The verdicts of the ``verdict`` column (``not tested``: the audit ran without its random control)."""


def beyond_budget(flipped: np.ndarray, min_edit: np.ndarray) -> np.ndarray:
    """Minimal edits with ``+inf`` where the face did not flip within the budget."""
    return np.where(np.asarray(flipped, dtype=bool), np.asarray(min_edit, dtype=float), np.inf)


def _place_scores(edits: np.ndarray) -> np.ndarray:
    """``(n, R + 1)`` integer scores ``2 · #beaten + #tied`` of each of the ``R + 1`` edits of a face
    against the other ``R`` (column 0 is the semantic's)."""
    smaller = (edits[:, :, None] < edits[:, None, :]).sum(axis=2)
    equal = (edits[:, :, None] == edits[:, None, :]).sum(axis=2) - 1  # not itself
    return 2 * smaller + equal


def face_scores(semantic: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Per face, the share ``q_i`` of the control's subspaces whose edit the semantic's beats (ties
    half). ``semantic`` is ``(n,)``, ``control`` ``(n, R)``, both with ``inf`` beyond the budget."""
    edits = np.concatenate([semantic[:, None], control], axis=1)
    return _place_scores(edits)[:, 0] / (2.0 * control.shape[1])


def _upper_tail(scores: np.ndarray, observed: int) -> float:
    """P(Σ of one place score per face ≥ observed), each face's place uniform over its ``R + 1``."""
    places = scores.shape[1]
    distribution = np.ones(1)
    for row in scores:
        distribution = np.convolve(distribution, np.bincount(row, minlength=2 * (places - 1) + 1) / places)
    return float(min(1.0, distribution[observed:].sum()))


@dataclass(frozen=True)
class SemanticTest:
    """One semantic against the random control.

    Attributes:
        effect: mean over faces of the face scores ``q_i`` (0.5 = like random).
        low, high: its 95 % t-interval over the faces (clipped to [0, 1]).
        p_value: one-sided exact p-value, the largest over leaving out any one face.
        edit_ratio: the control's median minimal edit over the semantic's (> 1: the semantic needs
            less image change; ``inf`` when only the control's median is beyond the budget, NaN when both are).
        faces: the number of faces.
    """

    effect: float
    low: float
    high: float
    p_value: float
    edit_ratio: float
    faces: int


def _interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return 0.0, 1.0
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(max(0.0, values.mean() - half)), float(min(1.0, values.mean() + half))


def compare_with_control(semantic: np.ndarray, control: np.ndarray) -> SemanticTest:
    """The semantic's effect, interval and robust exact p-value against the control (module docstring).

    Args:
        semantic: ``(n,)`` minimal edits of the semantic on ``n`` faces (``inf`` beyond the budget).
        control: ``(n, R)`` minimal edits of the ``R`` random subspaces on the same faces.
    """
    semantic, control = np.asarray(semantic, dtype=float), np.asarray(control, dtype=float)
    edits = np.concatenate([semantic[:, None], control], axis=1)
    places = _place_scores(edits)
    scores = places[:, 0] / (2.0 * control.shape[1])
    if len(semantic) > 1:  # the face most in the semantic's favour left out: no one face decides
        keep = np.ones(len(semantic), dtype=bool)
        keep[int(np.argmax(places[:, 0]))] = False
    else:
        keep = np.ones(1, dtype=bool)
    p_value = _upper_tail(places[keep], int(places[keep, 0].sum()))
    low, high = _interval(scores)
    own, others = np.median(semantic), np.median(control)
    ratio = float("nan") if math.isinf(own) and math.isinf(others) else (others / own if own > 0 else float("inf"))
    return SemanticTest(float(scores.mean()), low, high, p_value, float(ratio), len(semantic))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error across the semantics)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - position) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


FACES_LEFT_OUT = 2
"""Faces most in the winner's favour that a dominance must hold without (:func:`dominates`)."""


def dominates(better: np.ndarray, worse: np.ndarray, alpha: float) -> bool:
    """Whether the edits ``better`` are smaller than ``worse`` on significantly more faces than the
    other way round (one-sided sign test at ``alpha``, faces where both tie left out), even with the
    :data:`FACES_LEFT_OUT` faces most in ``better``'s favour left out."""
    wins = int((better < worse).sum())
    losses = int((better > worse).sum())
    wins -= FACES_LEFT_OUT
    if wins <= losses:
        return False
    return bool(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue < alpha)


def pairwise_dominance(edits: Mapping[str, np.ndarray], alpha: float) -> dict[tuple[str, str], bool]:
    """``{(a, b): whether a's edits beat b's}`` (:func:`dominates`) for every ordered pair of semantics."""
    return {(a, b): dominates(edits[a], edits[b], alpha) for a in edits for b in edits if a != b}


def ranks_of(edits: Mapping[str, np.ndarray], better: Mapping[tuple[str, str], bool]) -> list[int]:
    """Per semantic (in ``edits``' order), 1 + the number of semantics that beat it."""
    return [1 + sum(better[other, name] for other in edits if other != name) for name in edits]


def detectable_effect(faces: int, controls: int, tests: int, alpha: float) -> float:
    """The smallest effect that can reach significance with ``faces`` faces, ``controls`` random
    subspaces per dimension and ``tests`` semantics: the mean face score that the faces other than
    the best one must reach at Holm's strictest level ``alpha / tests`` (no ties). A semantic below
    it cannot show evidence, whatever the classifier does."""
    if faces < 2 or controls < 1:
        return float("nan")
    level = alpha / max(tests, 1)
    places = np.tile(np.arange(0, 2 * controls + 1, 2), (faces - 1, 1))
    distribution = np.ones(1)
    for row in places:
        distribution = np.convolve(distribution, np.bincount(row, minlength=2 * controls + 1) / (controls + 1))
    tail = np.cumsum(distribution[::-1])[::-1]
    reachable = np.nonzero(tail < level)[0]
    return float(reachable[0]) / (2.0 * controls * (faces - 1)) if len(reachable) else float("nan")


@dataclass(frozen=True)
class Verdict:
    """The verdict of one semantic and the reason in words."""

    verdict: str
    reason: str


def verdicts(edits: Mapping[str, np.ndarray], tests: Mapping[str, SemanticTest], adjusted: Mapping[str, float],
             specificity: Mapping[str, SemanticSpecificity | None], alpha: float,
             better: Mapping[tuple[str, str], bool] | None = None) -> dict[str, Verdict]:
    """Each semantic's verdict (module docstring).

    Args:
        edits: per semantic, its ``(n,)`` minimal edits (``inf`` beyond the budget).
        tests: per semantic, its test against the control; adjusted: its Holm-adjusted p-value.
        specificity: per semantic, its subspace's specificity as ``learn`` measured it (``None``
            where it was not: then the subspace counts as not specific, and as moving every
            other target as much as random edits do): whether it is specific enough for its result
            to mean anything, its target gain, and its ``cross_gains`` on the other semantics'
            targets.
        alpha: the significance level.
        better: :func:`pairwise_dominance` of ``edits``, where already computed.
    """
    specific = {name: m is not None and not m.low for name, m in specificity.items()}
    names = list(edits)
    beats = [name for name in names if adjusted[name] < alpha and tests[name].effect > 0.5]
    better = better if better is not None else pairwise_dominance(edits, alpha)
    result = {}
    for name in names:
        p_text = f"p = {adjusted[name]:.2g}"
        explained = [other for other in beats if other != name and better[other, name]]
        level = [other for other in names if other != name and not better[name, other]]
        moved = [other for other in beats if other != name and not specific[other]
                 and stands_in_for(edits[name], edits[other], _cross_gain(specificity[name], other),
                                   _target_gain(specificity[other]), alpha)]
        if not specific[name]:
            result[name] = Verdict(CANNOT_TELL, f"its subspace is not specific enough ({_in_words(specificity[name])})")
        elif name not in beats:
            result[name] = Verdict(NO_EVIDENCE, f"no easier than a random edit of its dimension ({p_text})")
        elif explained:
            result[name] = Verdict(NO_EVIDENCE, f"{_listed(explained)} flips the decision more easily on the same faces "
                                                f"(it beats random edits, {p_text})")
        elif level:
            untestable = [other for other in level if not specific[other]]
            verdict = CANNOT_TELL if untestable else NO_EVIDENCE
            result[name] = Verdict(verdict, f"it beats random edits ({p_text}) but does not stand out: {_listed(level)} "
                                            "flip the decision about as easily on the same faces")
        elif moved:
            result[name] = Verdict(CANNOT_TELL, f"its edits also move the target of {_listed(moved)}, whose subspace is "
                                                f"not specific enough to be tested, and it does not flip the decision "
                                                f"more easily than that target's change would explain: the decision "
                                                f"may follow {' or '.join(moved)} ({p_text})")
        else:
            result[name] = Verdict(EVIDENCE, f"easier than random edits ({p_text}, Holm) and than every other semantic "
                                             "on the same faces")
    return result


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names)


def _in_words(specificity: SemanticSpecificity | None) -> str:
    if specificity is None:
        return "specificity not measured"
    low, high = specificity.interval
    return f"specificity {specificity.specificity:.2f}, 90 % {low:.2f}–{high:.2f}"


def _cross_gain(specificity: SemanticSpecificity | None, other: str) -> float | None:
    """The upper end of how much these edits move ``other``'s target relative to random edits."""
    measured = specificity.cross_gains.get(other) if specificity is not None else None
    return None if measured is None else measured[2]


def _target_gain(specificity: SemanticSpecificity | None) -> float | None:
    return None if specificity is None else specificity.target_gain


def stands_in_for(edits: np.ndarray, other_edits: np.ndarray, cross_gain: float | None, other_target_gain: float | None,
                  alpha: float) -> bool:
    """Whether a semantic's flips may be explained by a decision that follows another semantic's target.

    If the decision followed the other's target, an edit would flip it once it moved that target
    far enough: the semantic's edits, which move it ``cross_gain`` times as much as random edits
    (upper end), would then flip it at most ``cross_gain / other_target_gain`` times more easily
    than the other's own edits. The semantic stands in for the other unless its edits are smaller
    than the other's by more than that factor, face by face (:func:`dominates`); and always when
    ``cross_gain`` is 1 or more (it moves the other's target as much as any edit does) or either
    gain was not measured.
    """
    if cross_gain is None or other_target_gain is None or not other_target_gain > 0 or cross_gain >= 1.0:
        return True
    factor = max(1.0, cross_gain / other_target_gain)
    return not dominates(np.asarray(edits, dtype=float) * factor, other_edits, alpha)
