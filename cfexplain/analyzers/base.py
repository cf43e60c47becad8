"""The interfaces criteria rely on: face parsers and landmark detectors.

Criteria never care which network is behind them: a :class:`FaceParser` turns images into
per-class probabilities with named classes and named *regions* (groups of classes, with a common
vocabulary: ``skin``, ``brows``, ``eyes``, ``nose``, ``mouth``, ``upper_lip``, ``lower_lip``,
``lips``, ``face``, ``hair``, ``background``; a parser offers the regions it can express); a
:class:`LandmarkDetector` turns images into ``(N, P, 2)`` pixel coordinates with named index groups.

Images are generator images: float NCHW in about ``[-1, 1]``, RGB. Each analyzer owns its
resizing and normalisation, and is differentiable with respect to the images.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ShapeError
from ..imaging import bilinear_resize

__all__ = ["FaceParser", "FaceParsing", "LandmarkDetector", "check_images"]


def check_images(images: torch.Tensor, *, channels: int = 3) -> torch.Tensor:
    """Validate a batch of images ``(N, channels, H, W)`` (floating point, finite)."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != channels:
        raise ShapeError(f"images must have shape (N, {channels}, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"images must be floating point (generator range about [-1, 1]), got {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise InputError("images contain NaN or infinite values")
    return images


@dataclass
class FaceParsing:
    """The output of a face parser for a batch of images.

    Attributes:
        logits: ``(N, C, H, W)`` per-class scores at the images' size; ``softmax`` over C gives
            the class probabilities.
        class_names: the C class names.
        regions: region name → the class names it is made of.
    """

    logits: torch.Tensor
    class_names: tuple[str, ...]
    regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def probabilities(self) -> torch.Tensor:
        """``(N, C, H, W)`` class probabilities (sum to 1 over classes)."""
        return self.logits.softmax(dim=1)

    def labels(self) -> torch.Tensor:
        """``(N, H, W)`` index of the most likely class per pixel."""
        return self.logits.argmax(dim=1)

    def class_indices(self, names: Sequence[str]) -> list[int]:
        """Indices of class or region ``names`` (regions expand to their classes)."""
        indices: list[int] = []
        for name in names:
            members = self.regions.get(name, (name,))
            for member in members:
                if member not in self.class_names:
                    raise InputError(
                        f"unknown class or region {name!r}; classes: {list(self.class_names)}, "
                        f"regions: {list(self.regions)}"
                    )
                indices.append(self.class_names.index(member))
        return sorted(set(indices))

    def mask(self, *names: str, soft: bool = True) -> torch.Tensor:
        """``(N, 1, H, W)`` mask of the union of classes/regions ``names``.

        ``soft=True`` sums their probabilities (differentiable); ``soft=False`` is the 0/1 mask
        of pixels whose most likely class is one of them.
        """
        if not names:
            raise InputError("mask() needs at least one class or region name")
        indices = self.class_indices(names)
        if soft:
            return self.probabilities()[:, indices].sum(dim=1, keepdim=True)
        labels = self.labels()
        hard = torch.zeros_like(labels, dtype=self.logits.dtype)
        for index in indices:
            hard = hard + (labels == index).to(self.logits.dtype)
        return hard.unsqueeze(1)


class FaceParser(nn.Module, abc.ABC):
    """Images → :class:`FaceParsing` (per-class logits at the images' size).

    Attributes:
        class_names: the classes, in output order.
        regions: region name → class names (the common region vocabulary the parser can express).
        source: how to load this parser again (set by the loaders: ``{"zoo": "facemesh_parser"}``,
            ``{"bisenet": path}``), so that semantics built on it can be rebuilt from a saved
            subspace set (:func:`cfexplain.presets.semantics_of`); ``None`` for a parser built by hand.
    """

    class_names: tuple[str, ...] = ()
    regions: Mapping[str, tuple[str, ...]] = {}
    source: Mapping[str, Any] | None = None

    @abc.abstractmethod
    def parse(self, images: torch.Tensor) -> FaceParsing:
        """Parse generator images ``(N, 3, H, W)`` in about ``[-1, 1]``."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The logits of :meth:`parse`."""
        return self.parse(images).logits

    check_images = staticmethod(check_images)


class LandmarkDetector(nn.Module, abc.ABC):
    """Images → ``(N, P, 2)`` landmark positions ``(x, y)`` in the images' pixel coordinates.

    Pixel coordinates: x to the right, y down, the centre of the top-left pixel at ``(0, 0)``.
    Differentiable with respect to the images.

    Attributes:
        num_points: P.
        groups: group name → landmark indices (``jaw``, ``brows``, ``nose``, ``eyes``, ``mouth`` …).
        source: how to load this detector again (``{"zoo": "facemesh"}``, ``{"fan": path}``), as
            for :attr:`FaceParser.source`; ``None`` for a detector built by hand.
    """

    num_points: int = 0
    groups: Mapping[str, tuple[int, ...]] = {}
    source: Mapping[str, Any] | None = None

    @abc.abstractmethod
    def landmarks(self, images: torch.Tensor) -> torch.Tensor:
        """Landmarks of generator images ``(N, 3, H, W)`` in about ``[-1, 1]``."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.landmarks(images)

    def group(self, name: str) -> tuple[int, ...]:
        """The indices of a named group."""
        try:
            return tuple(self.groups[name])
        except KeyError:
            raise InputError(f"unknown landmark group {name!r}; groups: {list(self.groups)}") from None

    check_images = staticmethod(check_images)


def resize_to_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to ``size × size`` (:func:`~cfexplain.imaging.bilinear_resize`), differentiable."""
    if images.shape[-2:] == (size, size):
        return images
    return bilinear_resize(images, (size, size))
