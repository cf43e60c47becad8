"""A synthetic generator whose latent subspaces provably drive known image regions.

``h = A u`` with a random invertible ``A``. The 16×16 image has three regions: ``left`` (a block
whose pixels are random non-linear functions of ``h[0:3]``), ``right`` (of ``h[3:6]``) and
``background`` (of ``h[6:]``). So directions that change the left region and nothing else are
exactly ``A⁻¹ span(e0, e1, e2)``.
"""

from __future__ import annotations

import torch
from torch import nn

from cfexplain.analyzers import FaceParser, FaceParsing, LandmarkDetector
from cfexplain.generators import ModuleGenerator

SIZE = 16
LEFT = (slice(2, 8), slice(2, 8))
RIGHT = (slice(2, 8), slice(9, 15))


def region_masks() -> dict[str, torch.Tensor]:
    left = torch.zeros(SIZE, SIZE)
    left[LEFT] = 1
    right = torch.zeros(SIZE, SIZE)
    right[RIGHT] = 1
    return {"left": left, "right": right, "background": 1 - left - right}


class RegionNet(nn.Module):
    def __init__(self, dim: int = 12, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.register_buffer("mixing", torch.randn(dim, dim, generator=g) / dim**0.5 + torch.eye(dim))
        masks = region_masks()
        self.register_buffer("masks", torch.stack([masks["left"], masks["right"], masks["background"]]))
        pixels = 3 * SIZE * SIZE
        self.register_buffer("w_left", torch.randn(pixels, 3, generator=g))
        self.register_buffer("w_right", torch.randn(pixels, 3, generator=g))
        self.register_buffer("w_background", torch.randn(pixels, dim - 6, generator=g))
        self.register_buffer("bias", 0.3 * torch.randn(pixels, generator=g))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        h = u @ self.mixing.T
        n = u.shape[0]
        left = torch.tanh(h[:, 0:3] @ self.w_left.T + self.bias)
        right = torch.tanh(h[:, 3:6] @ self.w_right.T + self.bias)
        background = torch.tanh(h[:, 6:] @ self.w_background.T / 2 + self.bias)
        shape = (n, 3, SIZE, SIZE)
        return (left.reshape(shape) * self.masks[0] + right.reshape(shape) * self.masks[1]
                + background.reshape(shape) * self.masks[2])

    def true_subspace(self, factors: slice) -> torch.Tensor:
        """Orthonormal basis of A⁻¹ span(e_i for i in factors)."""
        inverse = torch.linalg.inv(self.mixing.double())
        q, _ = torch.linalg.qr(inverse[:, factors])
        return q


def region_generator(dim: int = 12, seed: int = 0) -> tuple[ModuleGenerator, RegionNet]:
    net = RegionNet(dim, seed)
    return ModuleGenerator(net, input_shape=dim), net


class FixedRegionParser(FaceParser):
    """A parser that always returns the synthetic regions."""

    class_names = ("background", "left", "right")
    regions = {"face": ("left", "right")}

    def parse(self, images: torch.Tensor) -> FaceParsing:
        masks = region_masks()
        stacked = torch.stack([masks["background"], masks["left"], masks["right"]]).to(images)
        logits = (stacked * 20 - 10)[None].expand(images.shape[0], -1, -1, -1)
        return FaceParsing(logits=logits, class_names=self.class_names, regions=self.regions)


class RegionCentroids(LandmarkDetector):
    """Two "landmarks": intensity-weighted centroids of the left and right regions (channel 0)."""

    num_points = 2
    groups = {"left": (0,), "right": (1,)}

    def landmarks(self, images: torch.Tensor) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=images.dtype), torch.arange(SIZE, dtype=images.dtype), indexing="ij")
        masks = region_masks()
        points = []
        for name in ("left", "right"):
            weight = (images[:, 0] + 2) * masks[name].to(images)
            total = weight.sum(dim=(1, 2))
            points.append(torch.stack([(weight * xs).sum(dim=(1, 2)) / total, (weight * ys).sum(dim=(1, 2)) / total], -1))
        return torch.stack(points, dim=1)


class FewVisibleFactors(nn.Module):
    """A latent of ``dim`` coordinates of which only ``visible`` change the image (random smooth
    patterns, through tanh); every call adds fresh pixel noise, so that small changes are hard to
    see. Directions that spend their length on the dead coordinates are hard to tell apart."""

    def __init__(self, dim: int = 8, visible: int = 3, noise: float = 0.3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.visible, self.noise = visible, noise
        self.register_buffer("patterns", torch.randn(visible, 3, SIZE, SIZE, generator=g))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        image = torch.tanh(torch.einsum("nk,kchw->nchw", u[:, : self.visible], self.patterns) / 2)
        return image + self.noise * torch.randn_like(image)


class LeftRedness(nn.Module):
    """A classifier deciding by a fixed linear read-out of the left region's pixels only: logits (−s, +s)."""

    def __init__(self) -> None:
        super().__init__()
        readout = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(7))
        self.register_buffer("readout", readout / readout.norm())

    def forward(self, x):
        score = 3 * (x[:, :, LEFT[0], LEFT[1]] * self.readout).sum(dim=(1, 2, 3))
        return torch.stack([-score, score], dim=1)


def planted_rule_setting():
    """(generator, classifier, subspaces, semantics): two semantics (left / right colour) learned on
    the synthetic generator, and a classifier that reads only the left region."""
    from cfexplain.classifiers import Classifier, OutputSpec
    from cfexplain.criteria import RegionPixels
    from cfexplain.subspaces import Semantic, learn_subspaces

    generator, _ = region_generator(dim=12, seed=0)
    parser = FixedRegionParser()
    semantics = [
        Semantic("left_colour", RegionPixels(parser, "left", resolution=None),
                 [RegionPixels(parser, "left", inside=False, resolution=None)], keep_ratios=1e-6, target_ratio=1e-4),
        Semantic("right_colour", RegionPixels(parser, "right", resolution=None),
                 [RegionPixels(parser, "right", inside=False, resolution=None)], keep_ratios=1e-6, target_ratio=1e-4),
    ]
    subspaces = learn_subspaces(generator, semantics, space="z", n_samples=4, progress=False)
    classifier = Classifier(LeftRedness(), output=OutputSpec.softmax(["blue", "red"]), name="left redness")
    return generator, classifier, subspaces, semantics


class Brightness(nn.Module):
    """A tiny classifier: 'bright' when the image's mean is above ``threshold``; logits
    ``±gain · (mean − threshold)``."""

    def __init__(self, threshold: float = 0.0, gain: float = 8.0) -> None:
        super().__init__()
        self.threshold, self.gain = threshold, gain

    def forward(self, x):
        score = self.gain * (x.mean(dim=(1, 2, 3)) - self.threshold)
        return torch.stack([-score, score], dim=1)


def stylegan3_setting():
    """(generator, classifier, subspaces): the StyleGAN3 T fixture, a brightness classifier split at
    the mean of its faces, and two random 3-dimensional subspaces of ``w``."""
    import cfexplain
    from cfexplain.classifiers import Classifier, OutputSpec
    from cfexplain.subspaces import Subspace, SubspaceSet
    from conftest import fixture_path

    generator = cfexplain.load_generator(fixture_path("stylegan3", "nvlabs_t_res32.pkl"))
    brightness = Brightness(gain=40.0)
    classifier = Classifier(brightness, output=OutputSpec.softmax(["dark", "bright"]))
    with torch.no_grad():  # the mean brightness of its input (the classifier's preprocessing applied)
        images = generator.synthesize(generator.sample(16, space="w", seed=0), space="w")
        means = classifier.logits(images)[:, 1] / brightness.gain
    brightness.threshold = float(means.mean())
    rng = torch.Generator().manual_seed(5)
    subspaces = SubspaceSet([Subspace(name, torch.linalg.qr(torch.randn(32, 3, generator=rng))[0], torch.ones(3), "w",
                                      (32,)) for name in ("first", "second")])
    return generator, classifier, subspaces
