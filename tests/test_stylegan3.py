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
