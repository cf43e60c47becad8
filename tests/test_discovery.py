"""Unsupervised directions: closed forms against independent computations, Voynov training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cfexplain
from cfexplain.discovery import (
    VoynovDiscovery,
    discover_directions,
    ganspace_directions,
    random_directions,
    reconstructor_accuracy,
    sefa_directions,
)
from cfexplain.errors import InputError
from cfexplain.generators import ModuleGenerator
from cfexplain.subspaces import SubspaceSet, subspace_agreement
from synthetic import FewVisibleFactors, region_generator


def small_stylegan(seed=0):
    config = cfexplain.StyleGAN2Config.from_channel_base(16, channel_base=64, channel_max=16, z_dim=8, w_dim=8, mapping_layers=2)
    return cfexplain.StyleGAN2Generator(config, seed=seed)


def columns_match(a, b, tol=1e-6):
    """Each column of a equals the matching column of b up to sign."""
    cos = np.abs(np.sum(np.asarray(a) * np.asarray(b), axis=0))
    return np.all(cos > 1 - tol)


def test_sefa_matches_the_closed_form():
    generator = small_stylegan()
    directions, values, details = sefa_directions(generator, 4)
    layers = [m for m in generator.synthesis.modulated_layers() if not isinstance(m, type(generator.synthesis.b4.torgb))]
    stacked = torch.cat([m.affine.weight / m.affine.weight.norm(dim=1, keepdim=True) for m in layers]).double().detach()
    expected_values, expected_vectors = torch.linalg.eigh(stacked.T @ stacked)
    assert np.allclose(values, expected_values.flip(0)[:4].numpy())
    assert columns_match(directions, expected_vectors.flip(1)[:, :4].numpy())
    assert details["layers"] == [e.name for e in generator.style_layout if not e.is_torgb]


def test_ganspace_in_w_is_pca():
    generator = small_stylegan()
    directions, std, _ = ganspace_directions(generator, 3, space="w", n_samples=500, batch_size=500, seed=4)
    with torch.no_grad():
        w = generator.convert(generator.sample(500, seed=cfexplain.generators.base.make_rng(4)), "z", "w").double()
    centred = w - w.mean(0)
    values, vectors = torch.linalg.eigh(centred.T @ centred / 499)
    assert columns_match(directions, vectors.flip(1)[:, :3].numpy(), tol=1e-6)
    assert np.allclose(std, values.flip(0)[:3].sqrt().numpy())


class LinearFeatureGenerator(nn.Module):
    """features = W z (a linear first layer), then a fixed decoder to an 8×8 image."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.features = nn.Linear(6, 20, bias=False)
        self.features.weight.data = torch.randn(20, 6, generator=g) * torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5, 0.2])
        self.decode = nn.Linear(20, 3 * 8 * 8)

    def forward(self, z):
        return torch.tanh(self.decode(self.features(z))).reshape(-1, 3, 8, 8)


def test_ganspace_through_a_layer_regresses_back_to_z():
    """For linear features W z, the regressed directions are W's right singular vectors."""
    net = LinearFeatureGenerator()
    generator = ModuleGenerator(net, input_shape=6)
    directions, _, details = ganspace_directions(generator, 3, n_samples=4000, seed=0)
    _, _, vh = torch.linalg.svd(net.features.weight.detach().double())
    for k in range(3):
        assert subspace_agreement(directions[:, k:k + 1], vh[k:k + 1].T.numpy()) > 0.99
    assert details["pca_on"] == "first layer"
    with pytest.raises(InputError, match="no layer"):
        ganspace_directions(generator, 3, layer="nothing")


def test_voynov_training_lowers_the_loss_and_beats_random_directions():
    """Only 3 of 8 latent coordinates change the (noisy) images: learned directions move into
    them, and a fresh reconstructor tells them apart better than random directions."""
    torch.manual_seed(0)  # the generator's pixel noise
    generator = ModuleGenerator(FewVisibleFactors(dim=8, visible=3), input_shape=8)
    common = dict(batch_size=32, reconstructor_lr=3e-3, reconstructor_width=8, reconstructor_size=16, shift_scale=3.0)
    discovery = VoynovDiscovery(3, steps=120, deformator_lr=1e-2, seed=0, progress=False, **common).fit(generator)
    loss = discovery.history_["loss"]
    assert np.mean(loss[-30:]) < 0.8 * np.mean(loss[:30])
    directions = discovery.directions_
    assert torch.allclose(directions.T @ directions, torch.eye(3), atol=1e-4)  # orthonormal deformator
    assert (directions[:3].norm(dim=0) > 0.9).all()  # random unit directions keep about √(3/8) ≈ 0.61 there
    learned = reconstructor_accuracy(generator, directions, steps=120, progress=False, **common)["accuracy"]
    random = reconstructor_accuracy(generator, random_directions(8, 3, seed=1), steps=120, progress=False, **common)["accuracy"]
    assert learned > random, (learned, random)


def test_voynov_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A run killed after step 13 of 20 resumes from its step-10 checkpoint and ends where an
    uninterrupted run ends, with the same history."""
    from cfexplain.discovery import voynov

    generator, _ = region_generator(dim=12, seed=0)
    options = dict(steps=20, batch_size=8, reconstructor_width=4, reconstructor_size=16, seed=3, progress=False,
                   eval_batches=2, checkpoint_every=10)
    straight = VoynovDiscovery(4, **options).fit(generator)

    real_step, taken = voynov._step, []

    def dies_after_13(*args, **kwargs):
        if len(taken) == 13:
            raise KeyboardInterrupt
        taken.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(voynov, "_step", dies_after_13)
    with pytest.raises(KeyboardInterrupt):
        VoynovDiscovery(4, checkpoint_dir=tmp_path, **options).fit(generator)
    taken.clear()
    monkeypatch.setattr(voynov, "_step", lambda *a, **k: taken.append(1) or real_step(*a, **k))
    resumed = VoynovDiscovery(4, checkpoint_dir=tmp_path, **options).fit(generator)
    assert len(taken) == 10  # steps 11–20 only
    assert len(resumed.history_["loss"]) == 20
    assert all(type(value) is float for value in resumed.history_["loss"] + resumed.history_["accuracy"])
    assert np.allclose(resumed.history_["loss"], straight.history_["loss"], atol=1e-5)
    assert torch.allclose(resumed.directions_, straight.directions_, atol=1e-5)


def test_linear_deformator_has_unit_columns():
    generator, _ = region_generator(dim=12, seed=0)
    discovery = VoynovDiscovery(14, deformator="linear", steps=5, batch_size=4, reconstructor_width=4,
                                reconstructor_size=16, progress=False).fit(generator)
    assert discovery.directions_.shape == (12, 14)  # K may exceed D for the linear deformator
    assert torch.allclose(discovery.directions_.norm(dim=0), torch.ones(14), atol=1e-5)
    with pytest.raises(InputError, match="at most D"):
        VoynovDiscovery(14, deformator="ortho", steps=1, progress=False).fit(generator)


def test_discover_directions_returns_a_subspace_set(tmp_path):
    generator = small_stylegan()
    found = discover_directions(generator, "sefa", n_directions=3)
    assert isinstance(found, SubspaceSet) and list(found) == ["sefa_00", "sefa_01", "sefa_02"]
    assert found.space == "w" and found["sefa_00"].dim == 1
    found.save(tmp_path / "sefa")
    loaded = SubspaceSet.load(tmp_path / "sefa")
    assert torch.equal(loaded["sefa_01"].basis, found["sefa_01"].basis)
    assert loaded.provenance["method"] == "sefa"
    with pytest.raises(InputError, match="method"):
        discover_directions(generator, "magic")
    with pytest.raises(InputError, match="'w'"):
        discover_directions(generator, "sefa", space="z")
    region, _ = region_generator()
    with pytest.raises(InputError, match="StyleGAN2"):
        discover_directions(region, "sefa", space="w")


def test_descriptions_name_what_a_direction_moves():
    from cfexplain.criteria import RegionPixels
    from cfexplain.discovery import describe_directions
    from synthetic import FixedRegionParser

    generator, net = region_generator(dim=12, seed=0)
    parser = FixedRegionParser()
    named = {"left": RegionPixels(parser, "left", resolution=None), "right": RegionPixels(parser, "right", resolution=None),
             "background": RegionPixels(parser, ("left", "right"), inside=False, resolution=None)}
    directions = torch.cat([net.true_subspace(slice(0, 1)), net.true_subspace(slice(3, 4))], dim=1).float()
    left, right = describe_directions(generator, directions, named, space="z", n_samples=2, progress=False)
    assert left.text == "mostly left, little else" and left.shares["left"] > 0.9
    assert right.text == "mostly right, little else"
    found = discover_directions(generator, "voynov", n_directions=2, describe_with=named, steps=2, batch_size=4,
                                reconstructor_width=4, reconstructor_size=16, eval_batches=1, progress=False)
    assert all(found[name].provenance["description"] for name in found)
    assert set(found["voynov_00"].provenance["criterion_shares"]) == set(named)


def test_wide_pca_takes_the_randomized_path_and_agrees():
    from cfexplain.discovery.closed_form import _pca

    rng = np.random.default_rng(0)
    scales = np.array([10.0, 6.0, 3.0])
    samples = rng.normal(size=(600, 3)) * scales @ np.linalg.qr(rng.normal(size=(400, 3)))[0].T + 0.1 * rng.normal(size=(600, 400))
    mean, axes, std = _pca(samples, 3)  # min(N, F) = 400 > 4·3 + 64: randomized
    _, s, vt = np.linalg.svd(samples - samples.mean(axis=0), full_matrices=False)
    assert np.allclose(np.abs((axes * vt[:3].T).sum(axis=0)), 1.0, atol=1e-6)
    assert np.allclose(std, s[:3] / np.sqrt(599), rtol=1e-6)
