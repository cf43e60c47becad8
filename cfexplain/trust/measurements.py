"""Face measurements that planted-shortcut classifiers are trained on.

Each :class:`PlantedMeasurement` is one number per face, computed from the analyzers (a parser's
hard region masks, landmark positions) without gradient, and names the semantic an audit should
find evidence for when it audits a classifier that decides by it. :data:`PLANTED_MEASUREMENTS`
holds the seven of the planted-shortcut suite, :data:`NEGATIVE_CONTROLS` two that no semantic
explains; mouth opening and jaw width use the FaceMesh-468 topology
(:func:`cfexplain.zoo.facemesh`), eye openness the iris model's eyelids (:func:`cfexplain.zoo.iris`;
FaceMesh barely sees eye opening on small faces, docs/benchmarks.md). Colours are read in ``[0, 1]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ..analyzers.base import FaceParsing
from ..errors import InputError

__all__ = ["PlantedMeasurement", "PLANTED_MEASUREMENTS", "NEGATIVE_CONTROLS", "eyelid_gap", "region_redness",
           "planted_measurement"]


@dataclass(frozen=True)
class PlantedMeasurement:
    """A per-face measurement and the semantic that explains a classifier deciding by it.

    Attributes:
        name: e.g. ``"skin_luminance"``.
        semantic: the subspace an audit should find evidence for (e.g. ``"face_colour"``); ``None``
            for a negative control, a measurement that no semantic targets (any claim is false).
        measure: ``(images, parsing, landmarks) → (N,)``; ``landmarks`` is ``(N, P, 2)`` or ``None``.
        needs_landmarks: whether ``measure`` reads landmark positions.
        description: what is measured, in words.
    """

    name: str
    semantic: str | None
    measure: Callable[[torch.Tensor, FaceParsing, torch.Tensor | None], torch.Tensor]
    needs_landmarks: bool
    description: str


def _unit(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(-1, 1) + 1) / 2


def _mean_inside(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values (N, H, W)`` over the hard mask ``(N, 1, H, W)``."""
    weights = mask[:, 0]
    return (values * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)).clamp_min(1.0)


def region_redness(images: torch.Tensor, parsing: FaceParsing, region: str) -> torch.Tensor:
    """Mean redness ``R − (G + B) / 2`` of ``region`` (hard mask), images in their raw ``[-1, 1]`` range."""
    red = images[:, 0] - (images[:, 1] + images[:, 2]) / 2
    return _mean_inside(red, parsing.mask(region, soft=False))


def _skin_hue(images, parsing, landmarks):
    x, skin = _unit(images), parsing.mask("skin", soft=False)
    r, g, b = (_mean_inside(x[:, c], skin) for c in range(3))
    return torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b)  # the hue angle of the mean skin colour


def _luminance_inside(images: torch.Tensor, parsing: FaceParsing, region: str) -> torch.Tensor:
    x = _unit(images)
    luminance = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return _mean_inside(luminance, parsing.mask(region, soft=False))


def _skin_luminance(images, parsing, landmarks):
    return _luminance_inside(images, parsing, "skin")


def _eye_brightness(images, parsing, landmarks):
    return _luminance_inside(images, parsing, "eyes")


def _background_brightness(images, parsing, landmarks):
    return _luminance_inside(images, parsing, "outside_face")


def _random_label(images, parsing, landmarks):
    """A score that is a pseudo-random function of the exact pixels: its median split is a random
    label, which nothing in the face (and no semantic) predicts."""
    pattern = torch.randn(images.shape[1:], generator=torch.Generator().manual_seed(97)).to(images)
    return torch.frac((images.double() * pattern.double()).sum(dim=(1, 2, 3)) * 1e3).float()


def _lip_redness(images, parsing, landmarks):
    x = _unit(images)
    return _mean_inside(x[:, 0] - (x[:, 1] + x[:, 2]) / 2, parsing.mask("lips", soft=False))


def _distance(landmarks: torch.Tensor, a: int, b: int) -> torch.Tensor:
    return (landmarks[:, a] - landmarks[:, b]).norm(dim=1)


@functools.lru_cache(maxsize=4)
def _iris_detector(device: str):
    from ..zoo import iris

    return iris(device=device)


def eyelid_gap(eye_points: torch.Tensor) -> torch.Tensor:
    """Eye opening from the 16 eyelid points of an iris-model eye ``(N, 16, 2)`` (0 and 8 the
    corners, 1–7 the lower lid, 9–15 the upper): the distance between the lids' mean points over
    the distance between the corners."""
    lower, upper = eye_points[:, 1:8].mean(dim=1), eye_points[:, 9:16].mean(dim=1)
    return (lower - upper).norm(dim=1) / (eye_points[:, 0] - eye_points[:, 8]).norm(dim=1).clamp_min(1e-6)


def _eye_openness(images, parsing, landmarks):
    detector = _iris_detector(str(images.device))
    points = detector.landmarks(images, facemesh_points=landmarks)  # FaceMesh's points place the eye crops
    right, left = (eyelid_gap(points[:, list(detector.group(f"{eye}_eye"))]) for eye in ("right", "left"))
    return (right + left) / 2


def _mouth_opening(images, parsing, landmarks):
    return _distance(landmarks, 13, 14) / _distance(landmarks, 61, 291)


def _jaw_width(images, parsing, landmarks):
    return _distance(landmarks, 172, 397)


PLANTED_MEASUREMENTS: Mapping[str, PlantedMeasurement] = {m.name: m for m in (
    PlantedMeasurement("skin_luminance", "face_colour", _skin_luminance, False,
                       "mean luminance (Rec. 601) of the skin"),
    PlantedMeasurement("skin_hue", "face_colour", _skin_hue, False, "hue angle of the skin's mean colour"),
    PlantedMeasurement("lip_redness", "lip_colour", _lip_redness, False, "mean redness R − (G + B)/2 of the lips"),
    PlantedMeasurement("eye_brightness", "eye_photometry", _eye_brightness, False,
                       "mean luminance (Rec. 601) of the eye regions"),
    PlantedMeasurement("eye_openness", "eye_shape", _eye_openness, True,
                       "eyelid gap over eye width, both eyes averaged (the MediaPipe iris model's eyelid "
                       "outlines, cfexplain.zoo.iris)"),
    PlantedMeasurement("mouth_opening", "mouth_shape", _mouth_opening, True,
                       "inner-lip gap over mouth width (FaceMesh 13–14 / 61–291)"),
    PlantedMeasurement("jaw_width", "face_boundary", _jaw_width, True,
                       "distance between the jaw's corners (FaceMesh 172–397), pixels"),
)}
"""The measurements of the planted-shortcut suite, by name: each names the semantic that explains it."""

NEGATIVE_CONTROLS: Mapping[str, PlantedMeasurement] = {m.name: m for m in (
    PlantedMeasurement("background_brightness", None, _background_brightness, False,
                       "mean luminance (Rec. 601) outside the face oval, which no semantic targets"),
    PlantedMeasurement("random_label", None, _random_label, False,
                       "a pseudo-random function of the exact pixels: a random label"),
)}
"""Negative controls of the planted-shortcut suite: measurements no semantic explains, so an audit
of a classifier planted on one must claim no semantic."""


def planted_measurement(measurement: str | PlantedMeasurement) -> PlantedMeasurement:
    """A measurement by name (:data:`PLANTED_MEASUREMENTS` or :data:`NEGATIVE_CONTROLS`), or one
    given as such."""
    if isinstance(measurement, PlantedMeasurement):
        return measurement
    known = {**PLANTED_MEASUREMENTS, **NEGATIVE_CONTROLS}
    try:
        return known[measurement]
    except (KeyError, TypeError):
        raise InputError(f"unknown planted measurement {measurement!r}; known: {list(known)}") from None
