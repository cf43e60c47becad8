"""Criteria on landmarks: shape of a landmark group, and colours that move with the landmark mesh."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial import Delaunay

from ..analyzers.base import FaceParser, LandmarkDetector
from ..errors import InputError
from .._shared import shared
from ..imaging import bilinear_sample
from .base import Context, Criterion, resize_images
from .regions import region_mask

__all__ = ["LandmarkShape", "BlendedPixels"]


def shared_landmarks(detector: LandmarkDetector, images: torch.Tensor) -> torch.Tensor:
    """The detector's landmarks of ``images``, computed once per evaluation (see ``_shared``)."""
    return shared(detector, images, lambda: detector.landmarks(images))


def _indices(detector: LandmarkDetector, group: str | Sequence[int], complement: bool) -> tuple[int, ...]:
    chosen = detector.group(group) if isinstance(group, str) else tuple(int(i) for i in group)
    if not chosen:
        raise InputError("the landmark group is empty")
    if any(not 0 <= i < detector.num_points for i in chosen):
        raise InputError(f"landmark indices must be in [0, {detector.num_points})")
    if complement:
        excluded = set(chosen)
        chosen = tuple(i for i in range(detector.num_points) if i not in excluded)
    return tuple(sorted(set(chosen)))


class LandmarkShape(Criterion):
    """Positions of a landmark group, absolute or centred on the group's own centroid.

    Outputs ``2k`` numbers per image (x, y of k points), in pixels of a ``scale``-wide image
    (default: as detected) so that criteria on images of any size compare.

    Args:
        detector: any :class:`~cfexplain.analyzers.LandmarkDetector`.
        group: a group name of the detector (``"jaw"``, ``"eyes"``, ``"mouth"`` …) or indices.
        centered: subtract the group's centroid (shape without translation).
        complement: use every landmark *not* in the group (ICE's "other landmarks").
    """

    def __init__(self, detector: LandmarkDetector, group: str | Sequence[int], *, centered: bool = False,
                 complement: bool = False, name: str | None = None) -> None:
        if not isinstance(detector, LandmarkDetector):
            raise InputError(f"detector must be a LandmarkDetector, got {type(detector).__name__}")
        self.detector = detector
        self.indices = _indices(detector, group, complement)
        self.centered = centered
        label = group if isinstance(group, str) else f"{len(self.indices)} points"
        self.name = name or f"landmarks:{'not ' if complement else ''}{label}{' (centred)' if centered else ''}"

    @property
    def analyzers(self) -> tuple[object, ...]:
        """The landmark detector."""
        return (self.detector,)

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        points = shared_landmarks(self.detector, images)[:, list(self.indices)]
        if self.centered:
            points = points - points.mean(dim=1, keepdim=True)
        return points.flatten(1)


class BlendedPixels(Criterion):
    """Colours sampled at positions that move with the landmark mesh ("blended pixels").

    At the sample, the landmarks plus the four image corners are triangulated (Delaunay, scipy)
    and every pixel of the (optional) region gets its triangle and barycentric weights, fixed from
    then on. For an edited image, the pixels' positions follow their triangles' current landmarks
    and the colours are read there (bilinear, :func:`cfexplain.imaging.bilinear_sample`). Kept invariant, this allows only
    edits that warp the image the way the landmarks move: no change of colour or texture.

    Args:
        detector: landmark detector.
        parser, regions: restrict the pixels to a region (e.g. the face); optional.
        dilation, erosion: morphology of that region (fractions of the image size).
        resolution: working resolution.
    """

    def __init__(self, detector: LandmarkDetector, *, parser: FaceParser | None = None,
                 regions: Sequence[str] | str = (), dilation: float = 0.0, erosion: float = 0.0,
                 resolution: int = 48, name: str | None = None) -> None:
        self.detector = detector
        self.parser = parser
        self.regions = (regions,) if isinstance(regions, str) else tuple(regions)
        if self.regions and parser is None:
            raise InputError("regions need a parser")
        self.dilation, self.erosion, self.resolution = dilation, erosion, resolution
        self.name = name or ("blended:" + "+".join(self.regions) if self.regions else "blended")

    @property
    def analyzers(self) -> tuple[object, ...]:
        """The landmark detector (the parser's mask is fixed by :meth:`prepare`)."""
        return (self.detector,)

    def _to_grid(self, points: torch.Tensor, size: int) -> torch.Tensor:
        return (points + 0.5) * (self.resolution / size) - 0.5

    def prepare(self, images: torch.Tensor) -> Context:
        n, r = images.shape[0], self.resolution
        points = self._to_grid(shared_landmarks(self.detector, images), images.shape[-1]).double().cpu().numpy()
        corners = np.array([[0, 0], [r - 1, 0], [r - 1, r - 1], [0, r - 1]], dtype=np.float64)
        if self.regions:
            mask = region_mask(self.parser, images, self.regions, dilation=self.dilation, erosion=self.erosion,
                               resolution=r)[:, 0].cpu().numpy() > 0.5
        else:
            mask = np.ones((n, r, r), dtype=bool)
        ys, xs = np.mgrid[0:r, 0:r]
        pixel_xy = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
        per_sample = []
        for i in range(n):
            vertices = np.concatenate([points[i], corners])
            mesh = Delaunay(vertices)
            candidates = pixel_xy[mask[i].ravel()]
            simplex = mesh.find_simplex(candidates)
            keep = simplex >= 0
            candidates, simplex = candidates[keep], simplex[keep]
            transform = mesh.transform[simplex]
            bary2 = np.einsum("kij,kj->ki", transform[:, :2], candidates - transform[:, 2])
            weights = np.concatenate([bary2, 1 - bary2.sum(axis=1, keepdims=True)], axis=1)
            per_sample.append((mesh.simplices[simplex], weights))
        count = max(1, max(len(w) for _, w in per_sample))
        triangles = np.zeros((n, count, 3), dtype=np.int64)
        weights = np.zeros((n, count, 3), dtype=np.float64)
        valid = np.zeros((n, count), dtype=np.float64)
        for i, (tri, w) in enumerate(per_sample):
            triangles[i, : len(w)], weights[i, : len(w)], valid[i, : len(w)] = tri, w, 1.0
        device, dtype = images.device, images.dtype
        return {
            "triangles": torch.from_numpy(triangles).to(device),
            "weights": torch.from_numpy(weights).to(device=device, dtype=dtype),
            "valid": torch.from_numpy(valid).to(device=device, dtype=dtype),
            "corners": torch.from_numpy(corners).to(device=device, dtype=dtype),
        }

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        n, r = images.shape[0], self.resolution
        points = self._to_grid(shared_landmarks(self.detector, images), images.shape[-1])
        vertices = torch.cat([points, context["corners"].expand(n, -1, -1)], dim=1)  # (N, P + 4, 2)
        triangles = context["triangles"]  # (N, K, 3)
        corners = vertices.gather(1, triangles.reshape(n, -1, 1).expand(-1, -1, 2)).reshape(n, -1, 3, 2)
        positions = (context["weights"][..., None] * corners).sum(dim=2)  # (N, K, 2)
        colours = bilinear_sample(resize_images(images, r), positions)  # (N, 3, K)
        return (colours * context["valid"][:, None, :]).flatten(1)
