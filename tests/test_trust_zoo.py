"""Slow: the trust checks on the real zoo models (run with ``python -m pytest -m slow``)."""

from __future__ import annotations

import pytest
import torch

from cfexplain import zoo
from cfexplain.audit import NO_EVIDENCE
from cfexplain.presets import facemesh_semantics
from cfexplain.subspaces import learn_subspaces
from cfexplain.trust import (CORRECT_CLAIM, PLANTED_MEASUREMENTS, planted_dataset, planted_shortcut_check,
                             randomization_check)


@pytest.fixture(scope="module")
def zoo_setting():
    generator, parser = zoo.dcgan_faces(), zoo.facemesh_parser()
    semantics = facemesh_semantics(parser, zoo.facemesh())
    subspaces = learn_subspaces(generator, semantics, space="z", n_samples=8, batch_size=4, progress=False)
    return generator, subspaces


@pytest.mark.slow
def test_randomised_gender_classifier_changes_the_explanation(zoo_setting):
    generator, subspaces = zoo_setting
    check = randomization_check(generator, zoo.gender_classifier(), subspaces, n=12)
    assert check.changed, check


@pytest.mark.slow
def test_planted_skin_luminance_is_claimed_and_a_negative_control_claims_nothing():
    """The planted-shortcut check of the suite on the default path: channel-style subspaces learned
    with the defaults, classifiers trained on a matched sample and audited with the defaults. One
    planted on the skin's luminance: the audit must claim face colour, and nothing else. One
    planted on the brightness outside the face oval, which no semantic targets: no claim at all."""
    generator, parser = zoo.dcgan_faces(), zoo.facemesh_parser()
    subspaces = learn_subspaces(generator, facemesh_semantics(parser, zoo.facemesh()), space="s", progress=False)
    measured = [*PLANTED_MEASUREMENTS, "background_brightness"]
    images, scores = planted_dataset(generator, parser, 3072, measured, seed=12345)
    for measurement, outcome in (("skin_luminance", CORRECT_CLAIM), ("background_brightness", NO_EVIDENCE)):
        others = torch.stack([scores[m] for m in PLANTED_MEASUREMENTS if m != measurement], dim=1)
        check = planted_shortcut_check(generator, parser, subspaces, measurement=measurement, seed=0, n=32,
                                       data=(images, scores[measurement]), confounders=others,
                                       train_options={"n_train": 1024}, joint=False, attribution=False)
        assert check.val_accuracy > 0.8, check
        assert check.outcome == outcome and check.passed, check.table[["semantic", "verdict", "effect", "p_value"]]
