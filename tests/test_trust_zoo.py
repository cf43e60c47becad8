"""Slow: the trust checks on the real zoo models (run with ``python -m pytest -m slow``)."""

from __future__ import annotations

import pytest
import torch

from cfexplain import zoo
from cfexplain.presets import facemesh_semantics
from cfexplain.subspaces import learn_subspaces
from cfexplain.trust import PLANTED_MEASUREMENTS, planted_dataset, planted_shortcut_check, randomization_check


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
def test_planted_skin_luminance_is_explained_by_face_colour():
    """The planted-shortcut check of the suite on the default path: channel-style subspaces learned
    with the defaults, a classifier trained on a matched sample whose label is the skin's
    luminance, audited with the defaults: face colour must rank first, alone."""
    generator, parser = zoo.dcgan_faces(), zoo.facemesh_parser()
    subspaces = learn_subspaces(generator, facemesh_semantics(parser, zoo.facemesh()), space="s", progress=False)
    measured = list(PLANTED_MEASUREMENTS)
    images, scores = planted_dataset(generator, parser, 3072, measured, seed=12345)
    others = torch.stack([scores[m] for m in measured if m != "skin_luminance"], dim=1)
    check = planted_shortcut_check(generator, parser, subspaces, measurement="skin_luminance", seed=0, n=24,
                                   data=(images, scores["skin_luminance"]), confounders=others,
                                   train_options={"n_train": 1024}, joint=False, attribution=False)
    assert check.val_accuracy > 0.8, check
    assert check.passed, check.table
