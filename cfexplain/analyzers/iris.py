"""MediaPipe Iris (eye contours and irises) on eye crops placed by FaceMesh, differentiable.

FaceMesh regresses its 468 points jointly from a 192² view of the whole face, so on a small face
an eye that opens wider barely moves its eyelid points (docs/benchmarks.md, "Can the analyzer see
the geometry?"). The iris model looks at one eye at a time, 64² pixels around it, and outlines the
eyelids and the iris there. :class:`IrisLandmarks` places one square crop per eye from the
FaceMesh eye corners, runs the iris network on both crops, and maps the points back to the image.

The crop windows are held fixed under differentiation (computed from detached FaceMesh points):
the iris points then respond to the pixels of the eye, not to FaceMesh's whole-face regression.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ShapeError
from ..imaging import bilinear_sample, window_points, window_positions
from .base import LandmarkDetector
from .facemesh import FaceMeshLandmarks

__all__ = ["IrisLandmarks", "IRIS_GROUPS", "IRIS_EYE_CORNERS"]

_CONTOUR, _IRIS = 71, 5
_PER_EYE = _CONTOUR + _IRIS
_EYELIDS = 16  # the first 16 contour points outline the eyelids

IRIS_EYE_CORNERS: dict[str, tuple[int, int]] = {"right": (33, 133), "left": (362, 263)}
"""FaceMesh eye-corner indices that place and orient each eye's crop (the subject's right and left
eye; MediaPipe's ROI convention, crop side 2.3× the corners' distance)."""


def _eye_points(start: int) -> dict[str, tuple[int, ...]]:
    return {"eyelids": tuple(range(start, start + _EYELIDS)),
            "contour": tuple(range(start, start + _CONTOUR)),
            "iris": tuple(range(start + _CONTOUR, start + _PER_EYE))}


_RIGHT, _LEFT = _eye_points(0), _eye_points(_PER_EYE)

IRIS_GROUPS: dict[str, tuple[int, ...]] = {
    "right_eye": _RIGHT["eyelids"], "left_eye": _LEFT["eyelids"],
    "eyes": _RIGHT["eyelids"] + _LEFT["eyelids"],
    "right_iris": _RIGHT["iris"], "left_iris": _LEFT["iris"],
    "iris": _RIGHT["iris"] + _LEFT["iris"],
    "eye_contours": _RIGHT["contour"] + _LEFT["contour"],
}
"""Named point groups of :class:`IrisLandmarks` (152 points: per eye, 71 contour points, of which
the first 16 outline the eyelids: 0 and 8 the corners (FaceMesh 33 and 133 on the right eye, 263
and 362 on the left), 1–7 the lower lid, 9–15 the upper; then 5 iris points, the centre first; the right eye first)."""


class IrisLandmarks(LandmarkDetector):
    """152 eye points (eyelids, eye-region contours, irises) of generator images, differentiable.

    Args:
        network: the converted iris network: RGB ``(N, 3, 64, 64)`` in ``[0, 1]`` → (contours
            ``(N, 213)``, iris ``(N, 15)``), x, y, z per point in crop pixels.
        facemesh: the detector whose eye corners place the crops.
        crop_scale: the crop's side over the distance between the eye's corners.
        input_size: the network's input side (64).
    """

    num_points = 2 * _PER_EYE
    groups = IRIS_GROUPS

    def __init__(self, network: nn.Module, facemesh: FaceMeshLandmarks, *, crop_scale: float = 2.3,
                 input_size: int = 64) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.facemesh = facemesh
        self.crop_scale = crop_scale
        self.input_size = input_size

    def crop_windows(self, images: torch.Tensor, facemesh_points: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 2, 5)``: per eye (right, left), the crop's centre x, y, its side, and the unit
        vector x, y along the eye (from the first corner of :data:`IRIS_EYE_CORNERS` to the
        second), in image pixels. Computed without gradient, from ``facemesh_points``
        ``(N, 468, 2)`` where the caller has them already (else FaceMesh runs on ``images``)."""
        with torch.no_grad():  # detach too: no_grad does not stop forward-mode tangents (torch.func.jvp)
            mesh = (self.facemesh.landmarks(images) if facemesh_points is None else facemesh_points).detach()
            windows = []
            for first, second in IRIS_EYE_CORNERS.values():
                a, b = mesh[:, first], mesh[:, second]
                length = (b - a).norm(dim=1, keepdim=True)
                windows.append(torch.cat([(a + b) / 2, length * self.crop_scale, (b - a) / length.clamp_min(1e-6)], dim=1))
            return torch.stack(windows, dim=1)

    def _axes(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per crop, the image-pixel displacement of one crop side along the crop's x and y axes
        (``(N, 2, 2)`` each); the left eye's x axis reversed (the network sees mirrored left eyes)."""
        side, along = windows[..., 2:3], windows[..., 3:5]
        across = torch.stack([-along[..., 1], along[..., 0]], dim=-1)  # y down: 90° clockwise on screen
        mirror = torch.tensor([1.0, -1.0], dtype=windows.dtype, device=windows.device)[None, :, None]
        return along * side * mirror, across * side

    def eye_crops(self, images: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """``(N, 2, 3, S, S)`` crops in ``[0, 1]`` (right eye, then the mirrored left eye), aligned
        with the line through the eye's corners."""
        x_axis, y_axis = self._axes(windows)
        positions = window_positions(windows[..., 0:2], x_axis, y_axis, self.input_size)  # (N, 2, S, S, 2) pixels
        n, s = images.shape[0], self.input_size
        # bilinear reads at fixed (detached) positions: linear in the image, and forward-mode
        # differentiable, which grid_sample is not
        colours = bilinear_sample((images + 1) / 2, positions.reshape(n, 2 * s * s, 2))
        return colours.reshape(n, 3, 2, s, s).transpose(1, 2)

    def landmarks_3d(self, images: torch.Tensor, facemesh_points: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 152, 3)``: x, y in image pixels and the network's relative depth in the same units
        (``facemesh_points``: see :meth:`crop_windows`)."""
        images = self.check_images(images)
        if images.shape[-1] != images.shape[-2]:
            raise ShapeError(f"the iris detector needs square images, got {images.shape[-2]}×{images.shape[-1]}")
        n = images.shape[0]
        windows = self.crop_windows(images, facemesh_points)
        contours, iris = self.network(self.eye_crops(images, windows).flatten(0, 1))
        points = torch.cat([contours.reshape(-1, _CONTOUR, 3), iris.reshape(-1, _IRIS, 3)], dim=1)
        unit = points.reshape(n, 2, _PER_EYE, 3) / self.input_size - 0.5  # crop-centred, in crop sides
        x_axis, y_axis = self._axes(windows)
        xy = window_points(windows[..., 0:2], x_axis, y_axis, unit[..., 0:2])
        z = unit[..., 2:3] * windows[..., None, 2:3]
        return torch.cat([xy, z], dim=-1).reshape(n, self.num_points, 3)

    def landmarks(self, images: torch.Tensor, facemesh_points: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 152, 2)`` point positions (``facemesh_points``: see :meth:`crop_windows`)."""
        return self.landmarks_3d(images, facemesh_points)[..., :2]
