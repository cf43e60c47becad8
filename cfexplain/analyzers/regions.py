"""A face parser made of landmark polygons: region masks from any landmark detector.

Each region is a closed outline of landmarks (or the convex hull of a landmark set, for the
nose). For every pixel the signed distance to an outline (positive inside) gives a hard
mask (inside or not) and a soft one, ``sigmoid(distance / softness)``, differentiable with respect
to the landmark positions and therefore to the image. Overlapping regions are made exclusive by a
priority order, so the result is a proper per-pixel class distribution behind the same
:class:`~cfexplain.analyzers.FaceParser` interface as BiSeNet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .._shared import shared
from ..errors import InputError
from .base import FaceParser, FaceParsing, LandmarkDetector
from .facemesh import FACEMESH_GROUPS

__all__ = ["LandmarkRegionParser", "Region", "polygon_signed_distance", "FACEMESH_REGIONS"]


@dataclass(frozen=True)
class Region:
    """One class of a landmark parser.

    Attributes:
        name: the class name.
        indices: landmark indices of the outline.
        hull: the indices are a point set, not an ordered loop: the region is their convex hull
            (for convex parts such as the nose).
    """

    name: str
    indices: tuple[int, ...]
    hull: bool = False


FACEMESH_REGIONS: tuple[Region, ...] = (
    Region("mouth", FACEMESH_GROUPS["lips_inner"]),
    Region("upper_lip", FACEMESH_GROUPS["upper_lip"]),
    Region("lower_lip", FACEMESH_GROUPS["lower_lip"]),
    Region("right_eye", FACEMESH_GROUPS["right_eye"]),
    Region("left_eye", FACEMESH_GROUPS["left_eye"]),
    Region("right_brow", FACEMESH_GROUPS["right_brow"]),
    Region("left_brow", FACEMESH_GROUPS["left_brow"]),
    Region("nose", FACEMESH_GROUPS["nose"], hull=True),
)
"""FaceMesh feature regions, highest priority first (the mouth opening wins over the lips…)."""


def polygon_signed_distance(polygon: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Signed distance in pixels from every pixel centre to a closed polygon, positive inside.

    Args:
        polygon: ``(N, V, 2)`` vertices ``(x, y)`` in pixel coordinates (pixel centres at integers).
        height, width: the pixel grid.

    Returns:
        ``(N, height, width)``; differentiable with respect to the vertices (the inside/outside
        sign is piecewise constant and flips where the distance is zero, so the result is
        continuous).
    """
    dtype, device = polygon.dtype, polygon.device
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                            torch.arange(width, dtype=dtype, device=device), indexing="ij")
    p = torch.stack([xs, ys], dim=-1).reshape(1, -1, 1, 2)  # (1, P, 1, 2)
    a = polygon[:, None, :, :]  # (N, 1, V, 2)
    b = torch.roll(polygon, -1, dims=1)[:, None, :, :]
    ab = b - a
    t = (((p - a) * ab).sum(-1) / ab.square().sum(-1).clamp_min(1e-12)).clamp(0, 1)
    closest = a + t[..., None] * ab
    distance = ((p - closest).square().sum(-1) + 1e-12).sqrt().amin(dim=-1)  # (N, P)
    with torch.no_grad():  # even-odd rule
        ay, by, ax, bx = a[..., 1], b[..., 1], a[..., 0], b[..., 0]
        py, px = p[..., 1], p[..., 0]
        crosses = (ay > py) != (by > py)
        x_cross = ax + (py - ay) * (bx - ax) / torch.where(by == ay, torch.ones_like(by), by - ay)
        inside = ((crosses & (px < x_cross)).sum(-1) % 2) == 1
    signed = torch.where(inside, distance, -distance)
    return signed.reshape(-1, height, width)


def _hull_outline(points: torch.Tensor) -> torch.Tensor:
    """The convex hull of each point set ``(N, V, 2)`` as a closed outline ``(N, H, 2)``.

    The hull's vertex choice is piecewise constant; the outline moves with (and is differentiable
    in) the chosen points. Hulls with fewer vertices repeat their last one (a zero-length edge).
    """
    from scipy.spatial import ConvexHull

    hulls = [ConvexHull(p).vertices for p in points.detach().cpu().double().numpy()]
    size = max(len(h) for h in hulls)
    index = torch.tensor([list(h) + [h[-1]] * (size - len(h)) for h in hulls], device=points.device)
    return points.gather(1, index[..., None].expand(-1, -1, 2))


class LandmarkRegionParser(FaceParser):
    """Face regions from landmark polygons.

    Classes: ``background`` (outside the face outline), ``skin`` (inside it, outside every
    region) and the regions, whose soft masks are made exclusive in priority order
    (``p_k = m_k · Π_{j<k} (1 − m_j)``). Logits are the log-probabilities.

    Args:
        detector: any :class:`LandmarkDetector`.
        regions: the feature regions, highest priority first.
        face_outline: landmark loop of the face boundary.
        softness: width of the soft mask edge, in pixels of the parsed images.
        region_groups: extra region names (e.g. ``lips``) → class names.

    The default arguments describe FaceMesh; see :func:`cfexplain.zoo.facemesh_parser`.
    """

    def __init__(self, detector: LandmarkDetector, *, regions: Sequence[Region] = FACEMESH_REGIONS,
                 face_outline: Sequence[int] = FACEMESH_GROUPS["face_oval"], softness: float = 0.75,
                 region_groups: Mapping[str, tuple[str, ...]] | None = None) -> None:
        super().__init__()
        if softness <= 0:
            raise InputError(f"softness must be positive, got {softness}")
        self.detector = detector
        self.feature_regions = tuple(regions)
        self.face_outline = tuple(face_outline)
        self.softness = softness
        names = [r.name for r in self.feature_regions]
        self.class_names = ("background", "skin", *names)
        groups = {
            "brows": tuple(n for n in names if n.endswith("brow")),
            "eyes": tuple(n for n in names if n.endswith("eye")),
            "lips": tuple(n for n in names if n.endswith("lip")),
            "face": tuple(self.class_names[1:]),
            "outside_face": ("background",),
        }
        self.regions = {**{k: v for k, v in groups.items() if v}, **(region_groups or {})}

    def parse(self, images: torch.Tensor) -> FaceParsing:
        images = self.check_images(images)
        landmarks = shared(self.detector, images, lambda: self.detector.landmarks(images))
        return self.parse_landmarks(landmarks, images.shape[-2], images.shape[-1])

    def parse_landmarks(self, landmarks: torch.Tensor, height: int, width: int) -> FaceParsing:
        """Parse from given landmarks ``(N, P, 2)`` onto a ``height × width`` grid."""
        def occupancy(outline: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(polygon_signed_distance(outline, height, width) / self.softness)

        remaining = torch.ones(landmarks.shape[0], height, width, dtype=landmarks.dtype, device=landmarks.device)
        probabilities = []
        for region in self.feature_regions:
            outline = landmarks[:, list(region.indices)]
            mask = occupancy(_hull_outline(outline) if region.hull else outline)
            probabilities.append(mask * remaining)
            remaining = remaining * (1 - mask)
        face = occupancy(landmarks[:, list(self.face_outline)])
        stacked = torch.stack([remaining * (1 - face), remaining * face, *probabilities], dim=1)
        logits = stacked.clamp_min(1e-6).log()
        return FaceParsing(logits=logits, class_names=self.class_names, regions=self.regions)
