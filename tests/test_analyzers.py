"""Analyzer building blocks: soft-argmax, polygon masks, parsing results, the common interfaces."""

from __future__ import annotations

import pytest
import torch

from cfexplain.analyzers import FaceParsing, LandmarkDetector, local_soft_argmax
from cfexplain.analyzers.regions import LandmarkRegionParser, Region, polygon_signed_distance
from cfexplain.errors import InputError, ShapeError


def gaussian_maps(centres: torch.Tensor, size: int = 32, sigma: float = 1.5) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    cx, cy = centres[..., 0, None, None], centres[..., 1, None, None]
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


def test_local_soft_argmax_finds_subpixel_peaks():
    centres = torch.tensor([[[10.3, 7.8], [20.0, 25.6]]], dtype=torch.float64)
    maps = gaussian_maps(centres)
    assert torch.allclose(local_soft_argmax(maps, radius=4), centres, atol=0.02)


def test_local_soft_argmax_ignores_background():
    centres = torch.tensor([[[16.2, 15.7]]], dtype=torch.float64)
    maps = gaussian_maps(centres) - 0.3  # negative background everywhere
    maps[..., 0:4, 28:32] += 0.25  # a weak distant blob
    assert torch.allclose(local_soft_argmax(maps, radius=3), centres, atol=0.05)


def test_local_soft_argmax_is_differentiable():
    maps = gaussian_maps(torch.tensor([[[12.0, 9.0]]], dtype=torch.float64)).requires_grad_(True)
    local_soft_argmax(maps)[..., 0].sum().backward()
    assert maps.grad.abs().sum() > 0


def test_polygon_signed_distance():
    square = torch.tensor([[[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0]]])
    sd = polygon_signed_distance(square, 12, 12)
    assert sd.shape == (1, 12, 12)
    assert sd[0, 5, 5] == pytest.approx(3.0, abs=1e-5)  # centre: 3 px from every side
    assert sd[0, 5, 10] == pytest.approx(-2.0, abs=1e-5)  # outside, right of the square
    assert sd[0, 0, 0] == pytest.approx(-(8**0.5), abs=1e-5)
    assert (sd > 0.5).sum() == 25  # pixel centres well inside: x, y in 3..7 (the edges are at distance 0)
    reversed_order = polygon_signed_distance(square.flip(1), 12, 12)
    assert torch.allclose(sd, reversed_order)


def test_polygon_distance_gradient_moves_the_boundary():
    square = torch.tensor([[[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0]]], requires_grad=True)
    polygon_signed_distance(square, 12, 12)[0, 5, 9].backward()  # a pixel just right of the square
    assert square.grad[0, 1, 0] > 0 and square.grad[0, 2, 0] > 0  # moving the right edge right brings it inside


class FixedLandmarks(LandmarkDetector):
    num_points = 9
    groups = {"all": tuple(range(9))}

    def __init__(self, points: torch.Tensor) -> None:
        super().__init__()
        self.points = points

    def landmarks(self, images):
        return self.points.expand(images.shape[0], -1, -1)


def test_landmark_region_parser_is_exclusive():
    # Face outline: a big square; "eye": a small square inside; "cheek": a triangle overlapping it.
    points = torch.tensor([[[1.0, 1.0], [14.0, 1.0], [14.0, 14.0], [1.0, 14.0],
                            [4.0, 4.0], [8.0, 4.0], [8.0, 8.0], [4.0, 8.0], [10.0, 12.0]]])
    parser = LandmarkRegionParser(FixedLandmarks(points), regions=[Region("eye", (4, 5, 6, 7)), Region("cheek", (5, 8, 7), hull=True)],
                                  face_outline=(0, 1, 2, 3), softness=0.5)
    parsing = parser.parse(torch.zeros(2, 3, 16, 16))
    assert parsing.class_names == ("background", "skin", "eye", "cheek")
    probabilities = parsing.probabilities()
    assert torch.allclose(probabilities.sum(1), torch.ones(2, 16, 16), atol=1e-4)
    labels = parsing.labels()
    assert labels[0, 6, 6] == 2 and labels[0, 0, 15] == 0 and labels[0, 12, 3] == 1
    assert labels[0, 10, 9] == 3  # in the triangle, outside the eye
    hard_eye = parsing.mask("eye", soft=False)
    assert set(hard_eye.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(parsing.mask("face", soft=False), 1 - parsing.mask("background", soft=False))


def test_face_parsing_masks_and_errors():
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, 1, :2] = 5.0
    parsing = FaceParsing(logits=logits, class_names=("background", "u_lip", "l_lip"), regions={"lips": ("u_lip", "l_lip")})
    assert parsing.mask("u_lip", soft=False)[0, 0, :2].eq(1).all()
    assert torch.allclose(parsing.mask("lips"), parsing.mask("u_lip") + parsing.mask("l_lip"))
    with pytest.raises(InputError, match="unknown class or region 'hair'"):
        parsing.mask("hair")
    with pytest.raises(InputError, match="at least one"):
        parsing.mask()


def test_image_validation():
    detector = FixedLandmarks(torch.zeros(1, 9, 2))
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        detector.check_images(torch.zeros(3, 16, 16))
    with pytest.raises(InputError, match="NaN"):
        detector.check_images(torch.full((1, 3, 4, 4), float("nan")))
    with pytest.raises(InputError, match="unknown landmark group"):
        detector.group("ears")
