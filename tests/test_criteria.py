"""Criteria: outputs, contexts, differentiability in both modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cfexplain.criteria import (
    BlendedPixels,
    ColorResidual,
    FunctionCriterion,
    HighFrequency,
    Identity,
    LandmarkShape,
    RegionColor,
    RegionPixels,
)
from cfexplain.imaging import bilinear_sample
from cfexplain.errors import InputError
from synthetic import SIZE, FixedRegionParser, RegionCentroids, region_masks


def images(n=2, seed=0):
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_bilinear_sample_matches_grid_sample():
    x = images(2)
    positions = torch.rand(2, 20, 2, generator=torch.Generator().manual_seed(1)) * 17 - 0.5  # some outside
    grid = positions.clamp(0, SIZE - 1) / (SIZE - 1) * 2 - 1
    expected = F.grid_sample(x, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=True)[..., 0]
    assert torch.allclose(bilinear_sample(x, positions), expected, atol=1e-5)


def test_region_pixels_inside_outside_and_crop():
    parser = FixedRegionParser()
    x = images()
    inside = RegionPixels(parser, "left", resolution=None)
    outside = RegionPixels(parser, "left", inside=False, resolution=None)
    ctx = inside.prepare(x)
    assert ctx["box"] == (2, 8, 2, 8)
    assert inside(x).shape == (2, 3 * 6 * 6)
    assert torch.allclose(inside(x).reshape(2, 3, 6, 6), x[:, :, 2:8, 2:8])
    out = outside(x)
    assert out.shape == (2, 3 * SIZE * SIZE)
    assert out.reshape(2, 3, SIZE, SIZE)[:, :, 2:8, 2:8].abs().max() == 0
    with pytest.raises(InputError, match="cannot express"):
        RegionPixels(parser, "hair")


def test_morphology_grows_and_shrinks_the_region():
    parser = FixedRegionParser()
    x = images()
    area = lambda c: c.prepare(x)["mask"].sum().item()  # noqa: E731
    plain = area(RegionPixels(parser, "left", resolution=None))
    assert area(RegionPixels(parser, "left", dilation=3 / SIZE, resolution=None)) > plain
    assert area(RegionPixels(parser, "left", erosion=3 / SIZE, resolution=None)) < plain


def test_region_colour_and_residual():
    parser = FixedRegionParser()
    x = images()
    colour = RegionColor(parser, "left", resolution=None)(x)
    assert torch.allclose(colour, x[:, :, 2:8, 2:8].mean(dim=(2, 3)), atol=1e-6)
    residual = ColorResidual(parser, "left", resolution=None)(x).reshape(2, 3, SIZE, SIZE)
    assert torch.allclose(residual[:, :, 2:8, 2:8].mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-6)
    shifted = x.clone()
    shifted[:, :, 2:8, 2:8] += 0.3  # a pure mean-colour change of the region
    assert torch.allclose(ColorResidual(parser, "left", resolution=None)(shifted), residual.flatten(1), atol=1e-5)


def test_high_frequency_splits_the_image():
    x = images()
    high = HighFrequency(resolution=SIZE, cutoff=4)(x)
    low = HighFrequency(resolution=SIZE, cutoff=4, low=True)(x)
    assert torch.allclose(high + low, x.flatten(1), atol=1e-6)
    with pytest.raises(InputError, match="cutoff"):
        HighFrequency(resolution=16, cutoff=16)


def test_landmark_shape_centred_and_complement():
    detector = RegionCentroids()
    x = images()
    absolute = LandmarkShape(detector, "left")(x)
    centred = LandmarkShape(detector, [0, 1], centered=True)(x).reshape(2, 2, 2)
    assert absolute.shape == (2, 2)
    assert torch.allclose(centred.sum(dim=1), torch.zeros(2, 2), atol=1e-5)
    assert LandmarkShape(detector, "left", complement=True).indices == (1,)


def test_blended_pixels_are_invariant_to_landmark_driven_warps():
    """Moving the region's content together with its landmark leaves blended pixels unchanged."""

    class ShiftDetector(RegionCentroids):
        def landmarks(self, images):
            return super().landmarks(images)

    x = torch.zeros(1, 3, SIZE, SIZE)
    x[:, :, 4:6, 4:6] = 1.0  # a bright square in the left region
    criterion = BlendedPixels(ShiftDetector(), resolution=SIZE)
    context = criterion.prepare(x)
    base = criterion.outputs(x, context)
    assert base.shape[1] == 3 * SIZE * SIZE
    assert context["valid"].sum() == SIZE * SIZE
    different = x.clone()
    different[:, 0] += 0.5
    assert not torch.allclose(criterion.outputs(different, context), base)


def test_criteria_work_in_forward_and_reverse_mode():
    """JVPs agree with VJPs (adjoint identity) for every criterion, and with finite differences
    where the criterion is smooth at the sample (blended pixels sit exactly on pixel centres, a
    kink of bilinear interpolation, so their derivative there is one-sided)."""
    from torch.func import jvp, vjp

    parser, detector = FixedRegionParser(), RegionCentroids()
    x, t = images(1).double(), images(1, seed=3).double()
    for criterion in (RegionPixels(parser, "left", resolution=8), RegionColor(parser, "right", resolution=None),
                      ColorResidual(parser, "right", resolution=None), HighFrequency(resolution=SIZE, cutoff=4),
                      LandmarkShape(detector, "left", centered=True), BlendedPixels(detector, resolution=8),
                      FunctionCriterion(lambda im: im.mean(dim=(2, 3)), name="mean")):
        context = criterion.prepare(x)

        def f(im):
            return criterion.outputs(im, context)

        out, tangent = jvp(f, (x,), (t,))
        _, pullback = vjp(f, x)
        u = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        assert torch.allclose((u * tangent).sum(), (pullback(u)[0] * t).sum(), rtol=1e-8), criterion.name
        if not isinstance(criterion, BlendedPixels):
            eps = 1e-6
            numeric = (f(x + eps * t) - f(x - eps * t)) / (2 * eps)
            assert torch.allclose(tangent, numeric, atol=1e-5), criterion.name


def test_identity_and_function_criteria():
    embed = torch.nn.Linear(3 * SIZE * SIZE, 5)
    identity = Identity(lambda im: embed(im.flatten(1)))
    out = identity(images())
    assert out.shape == (2, 5) and torch.allclose(out.norm(dim=1), torch.ones(2))
    with pytest.raises(InputError):
        FunctionCriterion("nope")
    bad = FunctionCriterion(lambda im: im.mean(dim=1))  # (N, H, W): not (N, m)
    with pytest.raises(InputError, match=r"expected \(N, m\)"):
        bad(images())
    assert region_masks()["left"].sum() == 36


def test_criteria_share_one_landmark_pass_per_evaluation():
    from cfexplain._shared import shared_analyses

    class Counting(RegionCentroids):
        calls = 0

        def landmarks(self, images):
            Counting.calls += 1
            return super().landmarks(images)

    detector = Counting()
    a, b = LandmarkShape(detector, "left"), LandmarkShape(detector, "right", centered=True)
    x = images()
    with shared_analyses():
        a.outputs(x, {}), b.outputs(x, {})
    assert Counting.calls == 1
    a.outputs(x, {}), b.outputs(x, {})  # outside a shared block: one pass each
    assert Counting.calls == 3
