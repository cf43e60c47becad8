"""MediaPipe FaceMesh (468 points) as a differentiable landmark detector.

The network itself is converted from the float32 ``face_landmark.tflite`` (see
:func:`cfexplain.zoo.facemesh`); this module holds the detector around it and the landmark index
sets of the FaceMesh topology (region outlines as published with MediaPipe, Apache-2.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .base import LandmarkDetector, resize_to_square

__all__ = ["FaceMeshLandmarks", "FACEMESH_GROUPS", "FACEMESH_OUTLINES"]

_LIPS_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
_LIPS_LOWER_OUTER = (291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61)
_LIPS_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_LIPS_LOWER_INNER = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
              148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

FACEMESH_OUTLINES: dict[str, tuple[int, ...]] = {
    "face_oval": _FACE_OVAL,
    "lips_outer": _LIPS_UPPER_OUTER + _LIPS_LOWER_OUTER[1:-1],
    "lips_inner": _LIPS_UPPER_INNER + _LIPS_LOWER_INNER[1:-1],
    "upper_lip": _LIPS_UPPER_OUTER + tuple(reversed(_LIPS_UPPER_INNER)),
    "lower_lip": _LIPS_LOWER_OUTER + tuple(reversed(_LIPS_LOWER_INNER)),
    "right_eye": (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
    "left_eye": (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
    "right_brow": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46),
    "left_brow": (300, 293, 334, 296, 336, 285, 295, 282, 283, 276),
}
"""Closed outlines (ordered landmark loops) of the face regions; ``right``/``left`` are the subject's."""

_NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64)

FACEMESH_GROUPS: dict[str, tuple[int, ...]] = {
    **FACEMESH_OUTLINES,
    "lips": tuple(sorted(set(FACEMESH_OUTLINES["lips_outer"] + FACEMESH_OUTLINES["lips_inner"]))),
    "mouth": tuple(sorted(set(FACEMESH_OUTLINES["lips_outer"] + FACEMESH_OUTLINES["lips_inner"]))),
    "eyes": FACEMESH_OUTLINES["right_eye"] + FACEMESH_OUTLINES["left_eye"],
    "brows": FACEMESH_OUTLINES["right_brow"] + FACEMESH_OUTLINES["left_brow"],
    "nose": _NOSE,
    "jaw": _FACE_OVAL[8:29],
}
"""Named landmark index groups of the 468-point topology (``jaw`` runs ear to ear under the chin)."""


class FaceMeshLandmarks(LandmarkDetector):
    """468 FaceMesh landmarks of generator images, differentiable.

    FaceMesh expects a face crop with some room around the face; generator faces are usually tight
    crops, so the image is padded by ``margin`` (a fraction of its size, replicating the border)
    before it is resized to the network's 192² input. Positions are mapped back to the original
    image's pixel coordinates.

    Args:
        network: the converted FaceMesh network, returning ``(landmarks (N, 1404, 1, 1), face_logit)``
            for RGB input in ``[0, 1]``.
        margin: padding on every side, as a fraction of the image size (0.25 fits the zoo's faces).
        input_size: the network's input side (192).
    """

    num_points = 468
    groups = FACEMESH_GROUPS

    def __init__(self, network: nn.Module, *, margin: float = 0.25, input_size: int = 192) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.margin = margin
        self.input_size = input_size

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.check_images(images)
        h, w = images.shape[-2:]
        if h != w:
            raise ShapeError(f"FaceMesh needs square images, got {h}×{w}")
        pad = round(self.margin * w)
        x = (images + 1) / 2
        if pad:
            x = F.pad(x, [pad] * 4, mode="replicate")
        out = self.network(resize_to_square(x, self.input_size))
        points, face_logit = out
        points = points.reshape(images.shape[0], self.num_points, 3)
        scale = (w + 2 * pad) / self.input_size
        xy = points[..., :2] * scale - pad - 0.5  # network units are edge-based: pixel centres sit at +0.5
        return torch.cat([xy, points[..., 2:] * scale], dim=-1), face_logit.reshape(-1)

    def landmarks(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images)[0][..., :2]

    def landmarks_3d(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 468, 3)``: x, y in image pixels and the relative depth z in the same units."""
        return self._run(images)[0]

    def face_logit(self, images: torch.Tensor) -> torch.Tensor:
        """``(N,)`` the network's face-presence logit (sigmoid > 0.5: a face)."""
        return self._run(images)[1]
