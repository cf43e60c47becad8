"""StyleGAN3: the NVlabs pickles read without running their code, the alias-free network against
the golden fixtures (T and R), its plan and filters against what the pickles record, and its
spaces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import cfexplain
from cfexplain.errors import InputError
from cfexplain.generators import StyleGAN3Config, StyleGAN3Generator
from cfexplain.generators.stylegan3 import layer_plan, lowpass_filter
from conftest import fixture_path
from synthetic import stylegan3_setting

CONFIGS = ("t", "r")
TOLERANCE = 1e-5
"""Images and activations within this of the reference (they agree to about 3e-7)."""


@pytest.fixture(scope="module", params=CONFIGS)
def loaded(request):
    which = request.param
    generator = cfexplain.load_generator(fixture_path("stylegan3", f"nvlabs_{which}_res32.pkl"))
    expected = dict(np.load(fixture_path("stylegan3", f"expected_{which}_res32.npz")))
    config = json.loads(fixture_path("stylegan3", "configs.json").read_text())[f"{which}_res32"]
    return which, generator, {k: torch.from_numpy(v) for k, v in expected.items()}, config


def test_pickles_load_as_stylegan3(loaded):
    which, generator, _, config = loaded
    assert isinstance(generator, StyleGAN3Generator) and generator.provenance["format"] == "nvlabs-stylegan3"
    assert generator.config.use_radial_filters == (which == "r")
    assert generator.num_ws == config["num_ws"] and generator.synthesis.layer_names == config["layer_names"]
    assert generator.style_layout.total == config["styles_total"]
    assert {e.name: e.size for e in generator.style_layout} == config["styles_per_layer"]


def test_images_match_the_reference_for_z_w_mixed_and_truncation(loaded):
    _, generator, expected, _ = loaded
    with torch.no_grad():
        ws = generator.convert(expected["z"], "z", "w+")
        torch.testing.assert_close(ws, expected["ws"], atol=1e-6, rtol=0)
        torch.testing.assert_close(generator.convert(expected["z"], "z", "w+", truncation=0.7), expected["ws_trunc"],
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(generator.mapping.w_avg, expected["w_avg"])
        for codes, image in (("ws", "img"), ("ws_trunc", "img_trunc"), ("ws_mixed", "img_mixed")):
            torch.testing.assert_close(generator.synthesize(expected[codes], space="w+"), expected[image],
                                       atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(generator.synthesize(expected["z"], space="z"), expected["img"], atol=TOLERANCE, rtol=0)


def test_styles_and_activations_match_layer_by_layer(loaded):
    _, generator, expected, _ = loaded
    with torch.no_grad():
        s = generator.convert(expected["ws_mixed"], "w+", "s")
        for entry, styles in zip(generator.style_layout, generator.style_layout.split(s)):
            torch.testing.assert_close(styles, expected[f"styles_mixed/{entry.name}"], atol=1e-6, rtol=0)
        torch.testing.assert_close(generator.synthesize(s, space="s"), expected["img_mixed"], atol=TOLERANCE, rtol=0)
        layers = generator.style_layout.split(generator.convert(expected["ws"][:1], "w+", "s"))
        x = generator.synthesis.input(layers[0])
        torch.testing.assert_close(x[:, :16], expected["act0/input"], atol=TOLERANCE, rtol=0)  # the first 16 channels
        for layer, styles in zip(generator.synthesis.layers(), layers[1:]):
            x = layer(x, styles)
            torch.testing.assert_close(x[:, :16], expected[f"act0/{layer.plan.name}"], atol=TOLERANCE, rtol=0)


def test_the_plan_and_filters_are_the_recorded_ones(loaded):
    """The paper's schedule, computed from the constructor's settings, gives every layer the pickle
    records; the designed filters are the stored ones (separable, and radial for R)."""
    _, generator, _, config = loaded
    _, plans = layer_plan(generator.config)
    for plan in plans:
        recorded = config["layers"][plan.name]
        ours = {"in_channels": plan.in_channels, "out_channels": plan.out_channels,
                "in_size": [plan.in_size] * 2, "out_size": [plan.out_size] * 2,
                "in_sampling_rate": plan.in_sampling_rate, "out_sampling_rate": plan.out_sampling_rate,
                "conv_kernel": plan.conv_kernel, "up_factor": plan.up_factor, "down_factor": plan.down_factor,
                "padding": list(plan.padding), "is_torgb": plan.is_torgb, "down_radial": plan.down_radial}
        assert ours == {k: recorded[k] for k in ours}, plan.name
        layer = getattr(generator.synthesis, plan.name)
        for stored, designed in ((layer.up_filter, lowpass_filter(plan.up_taps, plan.in_cutoff, plan.in_half_width * 2,
                                                                   plan.tmp_sampling_rate)),
                                 (layer.down_filter, lowpass_filter(plan.down_taps, plan.out_cutoff,
                                                                    plan.out_half_width * 2, plan.tmp_sampling_rate,
                                                                    radial=plan.down_radial))):
            assert (stored is None) == (designed is None)
            if stored is not None:
                torch.testing.assert_close(designed, stored, atol=1e-6, rtol=0)


def test_a_random_configuration_of_another_shape():
    """Another resolution, mapping depth, width and layer count: the plan holds, the spaces convert,
    gradients flow, the transform rotates the picture, and early exit is refused."""
    config = StyleGAN3Config(resolution=64, z_dim=24, w_dim=20, mapping_layers=3, channel_base=2048, channel_max=48,
                             num_layers=10)
    generator = StyleGAN3Generator(config, seed=3).eval()
    assert generator.num_ws == 12 and generator.synthesis.layer_names[-1].endswith("_64_3")
    z = generator.sample(2, seed=1)
    s = generator.convert(z, "z", "s").detach().requires_grad_(True)
    images = generator.synthesize(s, space="s")
    assert images.shape == (2, 3, 64, 64) and bool(torch.isfinite(images).all())
    images.square().sum().backward()
    assert s.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(generator.synthesize(z, space="z"), images.detach(), atol=1e-6, rtol=0)
        before = generator.synthesize(z, space="z")
        angle = math.pi / 2
        generator.set_transform(torch.tensor([[math.cos(angle), -math.sin(angle), 0.0],
                                              [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]]))
        rotated = generator.synthesize(z, space="z")
    assert not torch.allclose(before, rotated, atol=1e-3)
    for space in ("w", "w+", "s"):  # codes drawn in fixed blocks: a shard's faces are the same bits
        assert torch.equal(generator.sample(18, space=space, seed=4)[16:], generator.sample(2, space=space, seed=4,
                                                                                           start=16))
    with pytest.raises(InputError, match="no intermediate RGB"):
        generator.synthesize(z, space="z", resolution=32)
    with pytest.raises(InputError, match="3×3"):
        generator.set_transform(torch.eye(2))


# --------------------------------------------------------------------------- every path on StyleGAN3


@pytest.fixture(scope="module")
def setting():
    return stylegan3_setting()


def test_sefa_reads_the_channel_affines_and_ganspace_the_mapping(setting):
    from cfexplain.discovery import discover_directions

    generator = setting[0]
    sefa = discover_directions(generator, "sefa", n_directions=4)
    layers = sefa.provenance["details"]["layers"]
    assert layers == generator.synthesis.layer_names[:-1]  # not the geometric input stage, not ToRGB
    stacked = torch.cat([generator.style_weights()[name].double() for name in layers])
    stacked = stacked / stacked.norm(dim=1, keepdim=True)
    values, vectors = torch.linalg.eigh(stacked.T @ stacked)
    for k, subspace in enumerate(sefa.values()):
        assert subspace.space == "w" and subspace.basis.shape == (32, 1)
        assert abs(float(subspace.basis[:, 0].double() @ vectors[:, -1 - k])) == pytest.approx(1, abs=1e-6)
    ganspace = discover_directions(generator, "ganspace", n_directions=3, n_samples=400)
    bases = torch.cat([s.basis for s in ganspace.values()], dim=1).double()
    assert torch.allclose(bases.T @ bases, torch.eye(3, dtype=torch.float64), atol=1e-6)


def test_counterfactuals_and_an_audit_run_on_stylegan3(setting):
    from cfexplain import CounterfactualExplainer
    from cfexplain.audit import audit

    generator, classifier, subspaces = setting
    result = CounterfactualExplainer(generator, classifier, subspaces, unit="latent", progress=False).explain(3)
    table = result.table
    assert table["flipped"].any()
    flipped = torch.as_tensor(table["flipped"].to_numpy())
    faces = torch.as_tensor(table["face"].to_numpy())
    with torch.no_grad():
        before = classifier.probabilities(generator.synthesize(result.codes[faces[flipped]], space="w"))[:, 1]
        after = classifier.probabilities(generator.synthesize(result.codes[faces[flipped]] + result.deltas[flipped],
                                                              space="w"))[:, 1]
    # each minimal edit takes its face from its side of the decision to the boundary
    assert bool(((after - 0.5).abs() < 0.01).all()) and bool(((before - 0.5).abs() > 0.05).all())
    audited = audit(generator, classifier, subspaces, faces=2, controls=2, joint_steps=5, ig_steps=4, image_samples=2,
                    progress=False)
    assert set(audited.table["semantic"]) == {"first", "second"} and audited.headline()


def test_photos_align_and_invert_without_noise_inputs(setting):
    from cfexplain.photos import invert, photo_codes
    from cfexplain import zoo

    generator, classifier, _ = setting
    codes, photos, inversion = photo_codes(generator, classifier, "w", zoo.example_photos(["astronaut"]),
                                           inversion={"steps": 8}, progress=False)
    assert codes.shape == (1, 32) and inversion.reconstructions.shape == (1, 3, 32, 32)
    with torch.no_grad():  # counterfactuals are rendered from the codes alone: nothing else to optimise
        torch.testing.assert_close(generator.synthesize(codes, space="w"), inversion.reconstructions, atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="noise inputs"):
        invert(generator, inversion.targets, space="w", steps=1, optimize_noise=True)


def test_the_command_line_audits_explains_and_reports_a_stylegan3_pickle(setting, tmp_path):
    import csv

    from cfexplain.audit import AuditResult
    from cfexplain.cli import EXIT_OK, main

    generator, classifier, subspaces = setting
    subspaces.save(tmp_path / "subspaces")
    torch.jit.script(classifier.model).save(str(tmp_path / "bright.pt"))
    common = ["--generator", str(fixture_path("stylegan3", "nvlabs_t_res32.pkl")), "--subspaces",
              str(tmp_path / "subspaces"), "--classifier", str(tmp_path / "bright.pt"), "--labels", "dark", "bright",
              "--faces", "2", "--quiet"]
    assert main(["audit", *common, "--controls", "2", "--image-samples", "2", "--joint-steps", "5", "--ig-steps", "4",
                 "--out", str(tmp_path / "audit")]) == EXIT_OK
    audited = AuditResult.load(tmp_path / "audit" / "audit")
    assert set(audited.table["semantic"]) == {"first", "second"}
    assert main(["report", "--generator", common[1], "--audit", str(tmp_path / "audit" / "audit"), "--subspaces",
                 str(tmp_path / "subspaces"), "--out", str(tmp_path / "report"), "--quiet"]) == EXIT_OK
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()
    assert main(["explain", *common, "--unit", "latent", "--out", str(tmp_path / "explained")]) == EXIT_OK
    rows = list(csv.DictReader(open(tmp_path / "explained" / "table.csv")))
    assert len(rows) == 2 * 3  # 2 faces × (2 subspaces + the latent-gradient control)


def test_the_integrity_checks_apply_to_stylegan3_pickles(tmp_path):
    import hashlib

    from cfexplain.errors import CorruptCheckpointError

    path = fixture_path("stylegan3", "nvlabs_r_res32.pkl")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert cfexplain.load_generator(path, sha256=digest).provenance["sha256"] == digest
    with pytest.raises(CorruptCheckpointError, match="is not the pinned"):
        cfexplain.load_generator(path, sha256="0" * 64)
    truncated = tmp_path / "stylegan3-r-truncated.pkl"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CorruptCheckpointError, match="stylegan3-r-truncated.pkl"):
        cfexplain.load_generator(truncated)


def test_subspaces_are_learned_in_stylespace(setting):
    """learn_subspaces in ``s`` (845 channel styles and the input's 4 numbers) with the Jacobian
    engine: a semantic that moves the top half's colour and keeps the bottom half's, on the faces
    it was learned from (two faces of a random-weight network say nothing about others)."""
    from cfexplain.criteria import FunctionCriterion
    from cfexplain.subspaces import Semantic, learn_subspaces

    generator = setting[0]
    top = FunctionCriterion(lambda images: images[:, :, :16].mean(dim=(2, 3)), name="top colour")
    bottom = FunctionCriterion(lambda images: images[:, :, 16:].mean(dim=(2, 3)), name="bottom colour")
    learned = learn_subspaces(generator, [Semantic("top_colour", top, [bottom])], space="s", n_samples=2, seed=11,
                              specificity_samples=0, progress=False)
    basis = learned["top_colour"].basis
    assert basis.shape[0] == generator.style_layout.total == 845 and basis.shape[1] >= 1
    s = generator.sample(2, space="s", seed=11)
    step = 0.05 * basis[:, 0] * generator.edit_scale("s", basis[:, :1])[0]
    with torch.no_grad():
        change = generator.synthesize(s + step, space="s") - generator.synthesize(s, space="s")
    top_change = change[:, :, :16].mean(dim=(2, 3)).abs().mean()
    bottom_change = change[:, :, 16:].mean(dim=(2, 3)).abs().mean()
    assert top_change > 3 * bottom_change


@pytest.mark.slow
def test_the_command_line_learns_from_a_stylegan3_pickle(tmp_path):
    """``cfexplain learn --generator stylegan3-….pkl`` with the offline FaceMesh stack, in ``w``."""
    from cfexplain.cli import EXIT_OK, main
    from cfexplain.subspaces import SubspaceSet

    assert main(["learn", "--generator", str(fixture_path("stylegan3", "nvlabs_t_res32.pkl")), "--stack", "facemesh",
                 "--space", "w", "--semantics", "lip_colour", "--samples", "2", "--out", str(tmp_path / "subspaces"),
                 "--quiet"]) == EXIT_OK
    learned = SubspaceSet.load(tmp_path / "subspaces")
    assert list(learned) == ["lip_colour"] and learned.space == "w" and learned["lip_colour"].basis.shape[0] == 32
    assert "specificity" in learned["lip_colour"].provenance
