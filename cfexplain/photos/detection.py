"""Faces in photographs: BlazeFace detection, then FaceMesh landmarks on the detected face.

Generator images are face crops already; photographs are not. :class:`BlazeFaceDetector` finds the
faces of a photo with MediaPipe's short-range BlazeFace (converted from the ``.tflite`` that ships
with FaceMesh, see :func:`cfexplain.zoo.blazeface`), and :func:`photo_landmarks` runs FaceMesh on
each detected face as MediaPipe does: a square window 1.5× the detection box, turned so that the
eyes lie level. Nothing here is differentiated: it places faces, it does not measure them.

BlazeFace's decoding (the facts of MediaPipe's published graph config): a 128² input in
``[-1, 1]``, the photo letterboxed into it; 896 anchors on a 16×16 grid (2 per cell) and an 8×8
grid (6 per cell), each at its cell centre with unit size; a box regresses its centre offset,
width and height and six keypoints in input pixels; scores are sigmoids of clipped logits; and
overlapping boxes (IoU > 0.3) are merged by their score-weighted mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._device import module_device
from ..errors import ShapeError
from ..imaging import bilinear_resize, bilinear_sample, window_points, window_positions

__all__ = ["BlazeFaceDetector", "FaceDetection", "BLAZEFACE_KEYPOINTS", "photo_landmarks", "square_crop"]

BLAZEFACE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
"""BlazeFace's six keypoints, in its output order (``right``/``left`` are the subject's)."""

_RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class FaceDetection:
    """One detected face, in the photo's pixel coordinates (x right, y down).

    Attributes:
        box: ``(x0, y0, x1, y1)``.
        keypoints: ``(6, 2)``, in :data:`BLAZEFACE_KEYPOINTS` order.
        score: the detector's confidence in ``(0, 1)``.
    """

    box: tuple[float, float, float, float]
    keypoints: torch.Tensor
    score: float

    @property
    def size(self) -> float:
        """The box's longer side, in pixels."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    def keypoint(self, name: str) -> torch.Tensor:
        """One keypoint ``(2,)`` by name (:data:`BLAZEFACE_KEYPOINTS`)."""
        return self.keypoints[BLAZEFACE_KEYPOINTS.index(name)]


def _anchors(input_size: int, strides: tuple[int, ...]) -> torch.Tensor:
    """``(A, 2)`` anchor centres in ``[0, 1]``: 2 per cell for each layer, layers of equal stride
    sharing one grid."""
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        same = j - i
        cells = input_size // strides[i]
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        grid = torch.stack([xs, ys], dim=-1).reshape(-1, 2).double().add(0.5).div(cells)
        centres.append(grid.repeat_interleave(2 * same, dim=0))
        i = j
    return torch.cat(centres).float()


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    low = torch.maximum(box[:2], boxes[:, :2])
    high = torch.minimum(box[2:], boxes[:, 2:])
    overlap = (high - low).clamp_min(0).prod(dim=1)
    area = lambda b: (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)  # noqa: E731
    return overlap / (area(box) + area(boxes) - overlap).clamp_min(1e-12)


class BlazeFaceDetector(nn.Module):
    """Find faces in photographs with MediaPipe's short-range BlazeFace.

    Args:
        network: the converted BlazeFace network: ``(N, 3, 128, 128)`` in ``[-1, 1]`` →
            ``(regressors (N, 896, 16), scores (N, 896, 1))``.
        min_score: the least confidence of a reported face.
        iou_threshold: boxes overlapping more than this are merged into one face.
        input_size, strides: the network's input side and its anchor layers' strides.
    """

    def __init__(self, network: nn.Module, *, min_score: float = 0.5, iou_threshold: float = 0.3,
                 input_size: int = 128, strides: tuple[int, ...] = (8, 16, 16, 16)) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.min_score, self.iou_threshold, self.input_size = float(min_score), float(iou_threshold), int(input_size)
        self.register_buffer("anchors", _anchors(self.input_size, tuple(strides)), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.anchors.device

    def letterbox(self, image: torch.Tensor) -> tuple[torch.Tensor, float, tuple[float, float]]:
        """The photo ``(3, H, W)`` in ``[-1, 1]`` scaled to fit the input and padded to a square:
        the input ``(1, 3, S, S)``, the scale (input pixels per photo pixel) and the padding (x, y)."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise ShapeError(f"a photo must be (3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        scale = self.input_size / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        resized = bilinear_resize(image[None].float(), size)
        pad_x, pad_y = (self.input_size - size[1]) / 2, (self.input_size - size[0]) / 2
        left, top = int(math.floor(pad_x)), int(math.floor(pad_y))
        padded = F.pad(resized, [left, self.input_size - size[1] - left, top, self.input_size - size[0] - top])
        return padded, size[1] / w, (left, top)

    @torch.no_grad()
    def detect(self, image: torch.Tensor) -> list[FaceDetection]:
        """The faces of one photo ``(3, H, W)`` in ``[-1, 1]``, most confident first."""
        x, scale, (left, top) = self.letterbox(image.to(self.device))
        regressors, scores = self.network(x)
        raw = regressors[0].reshape(-1, 8, 2) / self.input_size
        anchors = self.anchors[:, None, :]
        centres = raw[:, 0:1] + anchors
        points = raw[:, 2:] + anchors
        half = raw[:, 1:2] / 2
        boxes = torch.cat([centres - half, centres + half], dim=1).reshape(-1, 4)
        score = torch.sigmoid(scores[0, :, 0].clamp(-_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT))
        keep = (score > self.min_score) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, points, score = boxes[keep], points[keep], score[keep]
        offsets = torch.tensor([left, top], dtype=boxes.dtype, device=boxes.device)

        def to_photo(v: torch.Tensor) -> torch.Tensor:  # input units → photo pixels
            return (v * self.input_size - offsets) / scale

        faces = []
        remaining = score.argsort(descending=True)
        while remaining.numel():
            best = remaining[0]
            close = _iou(boxes[best], boxes[remaining]) > self.iou_threshold
            group, remaining = remaining[close], remaining[~close]
            weights = score[group] / score[group].sum()
            box = (boxes[group] * weights[:, None]).sum(0)
            keypoints = (points[group] * weights[:, None, None]).sum(0)
            faces.append(FaceDetection(tuple(float(v) for v in to_photo(box.reshape(2, 2)).reshape(4)),
                                       to_photo(keypoints).cpu(), float(score[best])))
        return faces


def square_crop(image: torch.Tensor, centre: torch.Tensor, x_axis: torch.Tensor, size: int) -> torch.Tensor:
    """A ``(3, size, size)`` crop of ``image (3, H, W)``: the square centred at ``centre`` (x, y)
    whose top edge runs along ``x_axis`` (a vector whose length is the square's side, in photo
    pixels); y runs 90° clockwise of it. Antialiased: the photo is first shrunk to about one photo
    pixel per crop pixel, then read bilinearly (borders replicated)."""
    side = float(x_axis.norm())
    if side <= 0:
        raise ShapeError("a crop needs a positive size")
    factor = side / size
    source, centre = image[None].float(), centre.float()
    if factor > 1.5:  # shrink first so that the bilinear read does not alias
        h, w = image.shape[-2:]
        shrunk = (max(2, round(h / factor)), max(2, round(w / factor)))
        source = F.interpolate(source, size=shrunk, mode="bilinear", align_corners=False, antialias=True)
        ratio = torch.tensor([shrunk[1] / w, shrunk[0] / h])
        centre = (centre + 0.5) * ratio - 0.5
        x_axis = x_axis.float() * ratio
    along = x_axis.float().to(source.device)
    positions = window_positions(centre.to(source.device), along, _clockwise(along), size)
    return bilinear_sample(source, positions.reshape(1, -1, 2)).reshape(image.shape[0], size, size)


def _clockwise(vector: torch.Tensor) -> torch.Tensor:
    """``vector`` turned 90° clockwise on screen (y points down)."""
    return torch.stack([-vector[..., 1], vector[..., 0]], dim=-1)


@torch.no_grad()
def photo_landmarks(facemesh, image: torch.Tensor, face: FaceDetection, *, scale: float = 1.5) -> torch.Tensor:
    """FaceMesh's 468 points ``(468, 2)`` of one detected face, in the photo's pixels.

    Args:
        facemesh: a :class:`~cfexplain.analyzers.FaceMeshLandmarks` (its network is run on the
            window directly; its generator-image margin is not used).
        image: the photo ``(3, H, W)`` in ``[-1, 1]``.
        face: a detection of :meth:`BlazeFaceDetector.detect`.
        scale: the window's side over the detection box's longer side (MediaPipe: 1.5).
    """
    right, left = face.keypoint("right_eye"), face.keypoint("left_eye")
    level = left - right  # subject's right eye is on the viewer's left
    angle = math.atan2(float(level[1]), float(level[0]))
    x0, y0, x1, y1 = face.box
    centre = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2])
    side = face.size * scale
    x_axis = torch.tensor([math.cos(angle), math.sin(angle)]) * side
    size = facemesh.input_size
    crop = square_crop(image.cpu(), centre, x_axis, size)
    network = facemesh.network
    device = module_device(network) or torch.device("cpu")
    points = network((crop[None].to(device) + 1) / 2)[0].reshape(facemesh.num_points, 3)[:, :2].cpu().double()
    unit = points / size - 0.5  # window-centred, in window sides (network units are edge-based)
    along = x_axis.double()
    return window_points(centre.double(), along, _clockwise(along), unit).float()
