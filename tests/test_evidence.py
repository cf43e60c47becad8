"""The audit's statistics: face scores, the exact test against the control, Holm, dominance, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfexplain.audit import evidence
from cfexplain.audit.evidence import (CANNOT_TELL, EVIDENCE, NO_EVIDENCE, compare_with_control, detectable_effect,
                                      dominates, face_scores, holm, stands_in_for, verdicts)
from cfexplain.subspaces.specificity import SemanticSpecificity

INF = math.inf


def test_face_scores_count_the_control_beaten_with_ties_half():
    semantic = np.array([0.1, INF, 0.3])
    control = np.array([[0.2, 0.05], [INF, 0.3], [0.3, INF]])
    assert face_scores(semantic, control).tolist() == [0.5, 0.25, 0.75]  # beyond the budget ties beyond the budget


def _null_trial(rng: np.random.Generator, faces: int, controls: int, censor: float) -> float:
    """One audit whose 'semantic' is just another random subspace: its p-value."""
    edits = rng.lognormal(size=(faces, controls + 1)) * rng.lognormal(size=(faces, 1))  # faces differ in difficulty
    edits[edits > censor] = INF  # beyond the budget: ties
    return compare_with_control(edits[:, 0], edits[:, 1:]).p_value


def test_the_test_holds_its_level_under_the_null():
    """A semantic exchangeable with the control is significant at most α of the time (the test is
    exact, and leaving the best face out only makes it stricter), with or without ties."""
    rng = np.random.default_rng(0)
    for censor in (INF, 1.5):
        p = np.array([_null_trial(rng, faces=24, controls=8, censor=censor) for _ in range(400)])
        assert (p < 0.05).mean() <= 0.05 + 0.02  # three standard errors of 400 trials above α at most
        assert (p < 0.5).mean() > 0.2  # and not trivially conservative


def test_the_exact_null_matches_a_permutation_estimate():
    rng = np.random.default_rng(1)
    edits = rng.lognormal(size=(12, 5))
    edits[edits > 2.0] = INF
    edits[:, 0] *= 0.7  # a somewhat easier semantic
    observed = compare_with_control(edits[:, 0], edits[:, 1:])
    # the same statistic by permutation: on each face the semantic's place among the 5 drawn at random,
    # the face most in its favour left out
    scores = np.stack([face_scores(edits[:, j], np.delete(edits, j, axis=1)) for j in range(5)], axis=1)
    kept = np.delete(scores, int(np.argmax(scores[:, 0])), axis=0)
    places = rng.integers(0, 5, size=(40000, len(kept)))
    draws = kept[np.arange(len(kept)), places].sum(axis=1)
    estimate = (draws >= kept[:, 0].sum() - 1e-12).mean()
    assert abs(observed.p_value - estimate) < 0.01 + 0.05 * estimate


def test_one_face_does_not_decide_the_test():
    control = np.full((10, 4), 1.0)
    semantic = np.full(10, 1.0)  # ties everywhere: like random
    semantic[0] = 0.1  # one face where the semantic is far easier than every random subspace
    result = compare_with_control(semantic, control)
    assert result.p_value == pytest.approx(1.0) and result.effect > 0.5


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])


def test_dominance_needs_more_than_two_faces():
    better, worse = np.full(8, 1.0), np.full(8, 2.0)
    assert dominates(better, worse, 0.05)  # 8 of 8 faces, two left out: 6 of 6, p = 1/64
    better[:3] = 3.0  # 5 wins, 3 losses: not significant
    assert not dominates(better, worse, 0.05)
    assert not dominates(np.full(5, 1.0), np.full(5, 2.0), 0.05)  # 5 faces: 3 of 3 after two left out, p = 1/8


def test_a_dominance_two_faces_could_give_is_none():
    """21 wins and 10 losses in 32 faces (one tie): p = 0.049 with one face left out, 0.068 with
    two. The planted suite's jaw-width classifier (seed 1) got a false lip-colour claim from
    exactly this against eye photometry and face colour."""
    better, worse = np.full(32, 1.0), np.full(32, 2.0)
    better[21:31] = 3.0
    better[31] = 2.0
    assert not dominates(better, worse, 0.05)
    better[21] = 1.0  # one more win: 22 against 9, p = 0.031 with two left out
    assert dominates(better, worse, 0.05)


def test_two_faces_never_reverse_an_order():
    """If a beats b, changing any two faces in any way never makes b beat a."""
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(300):
        faces = int(rng.integers(6, 30))
        a, b = rng.lognormal(size=faces), rng.lognormal(size=faces) * rng.uniform(1, 3)
        if not dominates(a, b, 0.05):
            continue
        turned = rng.choice(faces, size=2, replace=False)
        a2, b2 = a.copy(), b.copy()
        a2[turned], b2[turned] = 10.0, 0.01  # the faces turned as far against a as they go
        assert not dominates(b2, a2, 0.05)
        checked += 1
    assert checked > 50


def _edits(*rows: float, faces: int = 20) -> np.ndarray:
    return np.tile(np.array(rows, dtype=float), faces // len(rows))


def _measured(name: str, specific: bool, cross_gains: dict[str, float] | None,
              target_gain: float) -> SemanticSpecificity | None:
    """A specificity as ``learn`` records it (``None``: not measured), cross gains given by their upper ends."""
    if cross_gains is None:
        return None
    value = 3.0 if specific else 1.1
    return SemanticSpecificity(name, 4, target_gain, {"keep": 0.5}, value, (value - 0.05, value + 0.05), 16, 16,
                               {other: (high * 0.8, high * 0.6, high) for other, high in cross_gains.items()})


def _verdicts(edits, control, specific, cross_gains, target_gains=None):
    tests = {name: compare_with_control(e, control) for name, e in edits.items()}
    adjusted = dict(zip(edits, holm([t.p_value for t in tests.values()])))
    target_gains = target_gains or {name: 0.8 for name in edits}
    measured = {name: _measured(name, specific[name], cross_gains[name], target_gains[name]) for name in edits}
    return verdicts(edits, tests, adjusted, measured, 0.05)


def test_verdicts_claim_only_what_the_evidence_supports():
    faces = 20
    control = np.random.default_rng(3).uniform(0.5, 1.0, size=(faces, 16))
    edits = {"planted": np.full(faces, 0.1), "overlap": np.full(faces, 0.2), "unspecific": np.full(faces, 2.0),
             "random_like": control[:, 0].copy()}
    specific = {"planted": True, "overlap": True, "unspecific": False, "random_like": True}
    apart = {name: {other: 0.5 for other in edits if other != name} for name in edits}  # nobody moves another's target
    found = _verdicts(edits, control[:, 1:], specific, apart)
    assert found["planted"].verdict == EVIDENCE
    assert found["overlap"].verdict == NO_EVIDENCE and "planted" in found["overlap"].reason  # explained away
    assert found["unspecific"].verdict == CANNOT_TELL
    assert found["random_like"].verdict == NO_EVIDENCE
    # the planted subspace moves the unspecific one's target as much as random edits, but the decision
    # does not react to the unspecific one: still evidence
    moving = {**apart, "planted": {**apart["planted"], "unspecific": 1.2}}
    assert _verdicts(edits, control[:, 1:], specific, moving)["planted"].verdict == EVIDENCE
    # ... and when the decision reacts to it too, the planted one cannot be told apart from it
    edits["unspecific"] = np.full(faces, 0.3)
    found = _verdicts(edits, control[:, 1:], specific, moving)
    assert found["planted"].verdict == CANNOT_TELL and "unspecific" in found["planted"].reason
    assert _verdicts(edits, control[:, 1:], specific, apart)["planted"].verdict == EVIDENCE
    # cross gains not measured (subspaces of an older version): taken to move everything
    unmeasured = {**apart, "planted": None}
    assert _verdicts(edits, control[:, 1:], specific, unmeasured)["planted"].verdict == CANNOT_TELL
    # the planted subspace moves the unspecific target less than random edits (0.9×), but more than the
    # unspecific subspace itself does (0.3×): a decision that followed that target would flip up to 3×
    # more easily along the planted subspace. Its edits (0.1 against 0.3) do not beat that: cannot tell
    near = {**apart, "planted": {**apart["planted"], "unspecific": 0.9}}
    weak_own = {name: (0.3 if name == "unspecific" else 0.8) for name in edits}
    found = _verdicts(edits, control[:, 1:], specific, near, weak_own)
    assert found["planted"].verdict == CANNOT_TELL and "unspecific" in found["planted"].reason
    assert not stands_in_for(edits["planted"], np.full(faces, 0.5), 0.9, 0.3, 0.05)  # 5× smaller: more than 3×
    assert _verdicts(edits, control[:, 1:], specific, near)["planted"].verdict == EVIDENCE  # own gain 0.8: 1.1×


def test_detectable_effect_falls_with_more_faces():
    effects = [detectable_effect(n, 16, 6, 0.05) for n in (8, 16, 32, 64)]
    assert effects == sorted(effects, reverse=True) and 0.5 < effects[-1] < effects[0] < 1
    assert math.isnan(detectable_effect(1, 16, 6, 0.05))


def test_verdict_names_are_the_declared_ones():
    from cfexplain.audit.columns import schema_properties

    assert schema_properties()["verdict"]["enum"] == list(evidence.VERDICTS)


def test_every_declared_column_is_computed_by_exactly_one_stage():
    from cfexplain.audit.columns import TABLE_COLUMNS
    from cfexplain.audit.stages import ALL_STAGES

    computed = [name for stage in ALL_STAGES for name in stage.columns]
    assert sorted(computed) == sorted(set(computed))  # no column computed twice
    assert set(computed) | {"semantic"} == set(TABLE_COLUMNS)
