"""Results do not depend on torch's CPU thread count; ``--threads`` and ``set_threads`` set it."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cfexplain
from cfexplain import load_generator
from cfexplain.classifiers import Classifier, OutputSpec, Preprocessing
from cfexplain.cli import EXIT_OK, EXIT_USAGE, main
from cfexplain.counterfactual import CounterfactualExplainer
from cfexplain.criteria.regions import HighFrequency
from cfexplain.errors import InputError
from cfexplain.imaging import bilinear_resize
from cfexplain.subspaces import Semantic, learn_subspaces
from cfexplain.threads import auto_threads, available_cores

from conftest import fixture_path


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _at_each_thread_count(compute):
    """``compute()`` with 1 and 2 torch threads."""
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(compute())
    return results


class Contrast(nn.Module):
    """A small CNN: its decision reads local contrast, so searches take several steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean(dim=(2, 3)))


def test_bilinear_resize_gives_the_same_bits_for_any_thread_count(restore_threads):
    """torch's plain bilinear upsampling does not (it rounds by thread chunk); the resize cfexplain
    uses everywhere does, and equals it within float rounding when growing."""
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for size in ((192, 192), (24, 24), (100, 80)):
        first, *others = _at_each_thread_count(lambda: bilinear_resize(images, size))
        assert all(torch.equal(first, other) for other in others)
    plain = F.interpolate(images, size=(192, 192), mode="bilinear", align_corners=False)
    assert torch.allclose(bilinear_resize(images, (192, 192)), plain, atol=1e-5)
    grown = _at_each_thread_count(lambda: Preprocessing(size=150)(images[:, :, :32, :32]))
    assert all(torch.equal(grown[0], other) for other in grown[1:])


def test_learned_subspaces_and_searches_are_bit_identical_across_thread_counts(restore_threads):
    generator = load_generator(fixture_path("stylegan2", "nvlabs_res32.pkl"))
    semantics = [Semantic("texture", HighFrequency(resolution=64, cutoff=24),
                          [HighFrequency(resolution=64, cutoff=24, low=True)], keep_ratios=1e-3)]

    def learn():
        subspaces = learn_subspaces(generator, semantics, space="w", n_samples=4, specificity_samples=0,
                                    progress=False)
        return subspaces["texture"].basis, subspaces["texture"].eigenvalues

    (basis, values), *others = _at_each_thread_count(learn)
    assert basis.shape[1] > 0
    assert all(torch.equal(basis, b) and torch.equal(values, v) for b, v in others)

    from cfexplain.subspaces import Subspace, SubspaceSet
    subspaces = SubspaceSet([Subspace("texture", basis, values, "w", generator.latent_shape("w"))])
    classifier = Classifier(Contrast(), output=OutputSpec.softmax(["a", "b"]))

    def search():
        result = CounterfactualExplainer(generator, classifier, subspaces, progress=False).explain(3)
        return result.table

    first, *others = _at_each_thread_count(search)
    assert all(first.equals(other) for other in others)

    def audited():
        result = cfexplain.audit(generator, classifier, subspaces, 4, controls=2, ig_steps=8, progress=False)
        return result.table, result.joint

    (table, joint), *others = _at_each_thread_count(audited)
    assert all(table.equals(t) and joint.equals(j) for t, j in others)


def test_set_threads_and_the_auto_policy(restore_threads):
    assert cfexplain.set_threads(1) == 1 and torch.get_num_threads() == 1
    assert 1 <= cfexplain.set_threads("auto") <= available_cores()
    assert 1 <= auto_threads() <= available_cores()
    for bad in (0, -2, "many", True, 1.5):
        with pytest.raises(InputError, match="threads must be"):
            cfexplain.set_threads(bad)


def test_the_cli_sets_threads_from_the_flag_or_the_configuration_and_records_them(tmp_path, capsys,
                                                                                  restore_threads):
    """The audit's provenance records the count; a bad count is exit 2 naming the flag or the key."""
    generator = load_generator(fixture_path("stylegan2", "nvlabs_res32.pkl"))
    bases = torch.linalg.qr(torch.randn(generator.latent_dim("w"), 3, generator=torch.Generator().manual_seed(0)))[0]
    from cfexplain.subspaces import Subspace, SubspaceSet
    SubspaceSet([Subspace("texture", bases, torch.tensor([3.0, 2.0, 1.0]), "w",
                          generator.latent_shape("w"))]).save(tmp_path / "subspaces")
    torch.jit.script(Contrast()).save(str(tmp_path / "contrast.pt"))
    config = tmp_path / "run.toml"
    config.write_text("[runtime]\nthreads = 1\n")

    def audit(out: str, *extra: str) -> int:
        return main(["audit", "--generator", str(fixture_path("stylegan2", "nvlabs_res32.pkl")), "--subspaces",
                     str(tmp_path / "subspaces"), "--classifier", str(tmp_path / "contrast.pt"), "--labels", "a", "b",
                     "--faces", "2", "--controls", "2", "--no-joint", "--quiet", "--out", str(tmp_path / out), *extra])

    def recorded(out: str) -> int:
        return json.loads((tmp_path / out / "audit" / "audit.json").read_text())["provenance"]["threads"]

    torch.set_num_threads(3)
    assert audit("one", "--config", str(config)) == EXIT_OK
    assert recorded("one") == 1 and torch.get_num_threads() == 3  # main() puts the caller's count back
    assert audit("two", "--threads", "2") == EXIT_OK and recorded("two") == 2
    with pytest.raises(SystemExit) as exit_info:
        audit("bad", "--threads", "0")
    assert exit_info.value.code == EXIT_USAGE and "integer ≥ 1 or 'auto'" in capsys.readouterr().err
    config.write_text("[runtime]\nthreads = 0\n")
    assert audit("three", "--config", str(config)) == EXIT_USAGE
    assert "[runtime] threads must be an integer ≥ 1" in capsys.readouterr().err
