"""Slow: the trust checks on the real zoo models (run with ``python -m pytest -m slow``)."""

from __future__ import annotations

import pytest

from cfexplain import zoo
from cfexplain.presets import facemesh_semantics
from cfexplain.subspaces import learn_subspaces
from cfexplain.trust import randomization_check


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
    assert check["changed"], check
