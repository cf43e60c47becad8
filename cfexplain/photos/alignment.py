"""Align face photos to a generator's framing, so that inversion starts from a face where the
generator puts faces.

Two framings, both a square window of the photo (a similarity transform: shift, turn, scale):

* :class:`FFHQFraming`: the FFHQ dataset's recipe (Karras et al., 2019), from the eye centres and
  the mouth corners. The window's centre sits a tenth of the eye-to-mouth vector below the eyes'
  midpoint; its side is the larger of 4× the eye distance and 3.6× the eye-to-mouth distance; it
  is turned to the eye line corrected by the mouth. StyleGAN2 checkpoints trained on FFHQ-style
  data expect this.
* :class:`TemplateFraming`: the window that puts the photo's FaceMesh points closest (least
  squares, Umeyama's similarity fit) to where the generator's own faces have them on average.
  It works for any generator, with no dataset recipe; the zoo DCGAN uses it.

:func:`align_faces` runs detection (BlazeFace), landmarks (FaceMesh on the detected face) and the
framing on each photo, and raises :class:`~cfexplain.errors.PhotoError`, naming the photo, when it
has no face, several faces, or a face too small for the generator's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from tqdm.auto import tqdm

from .._device import module_device
from ..analyzers.facemesh import FACEMESH_OUTLINES
from ..errors import InputError, PhotoError
from ..generators.base import Generator
from ..imaging import window_positions
from .detection import BlazeFaceDetector, FaceDetection, photo_landmarks, square_crop
from .io import Photo, PhotoSource, load_photos

__all__ = ["AlignedFaces", "Framing", "FFHQFraming", "TemplateFraming", "align_faces", "default_framing"]

Window = tuple[torch.Tensor, torch.Tensor]
"""A square window of a photo: its centre (x, y) and the vector along its top edge (length = side)."""


class Framing:
    """Where a generator's faces sit in its images: maps a photo's FaceMesh points to a window."""

    def window(self, landmarks: torch.Tensor) -> Window:
        """The window ``(centre, x_axis)`` of the photo whose FaceMesh points are ``landmarks (468, 2)``."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for provenance."""
        return type(self).__name__


@dataclass(frozen=True)
class FFHQFraming(Framing):
    """The FFHQ alignment recipe (module docstring) from FaceMesh's eye outlines and mouth corners."""

    def window(self, landmarks: torch.Tensor) -> Window:
        points = landmarks.double()
        eye_right = points[list(FACEMESH_OUTLINES["right_eye"])].mean(0)  # the subject's right: the viewer's left
        eye_left = points[list(FACEMESH_OUTLINES["left_eye"])].mean(0)
        mouth = (points[61] + points[291]) / 2
        eye_mid = (eye_right + eye_left) / 2
        eye_to_eye, eye_to_mouth = eye_left - eye_right, mouth - eye_mid
        x = eye_to_eye - torch.stack([-eye_to_mouth[1], eye_to_mouth[0]])
        x = x / x.norm() * max(float(eye_to_eye.norm()) * 2.0, float(eye_to_mouth.norm()) * 1.8)
        return (eye_mid + 0.1 * eye_to_mouth).float(), (2 * x).float()

    def describe(self) -> str:
        return "FFHQ recipe (eye centres, mouth corners)"


@dataclass(frozen=True)
class TemplateFraming(Framing):
    """Fit the photo's FaceMesh points to a template of where the generator puts them.

    Attributes:
        template: ``(468, 2)`` mean FaceMesh points of generated faces, in units of the image side
            (pixel centres at ``(i + 0.5) / R``).
        samples: how many generated faces the template averages.
    """

    template: torch.Tensor = field(repr=False)
    samples: int = 0

    @classmethod
    def from_generator(cls, generator: Generator, facemesh, *, n_samples: int = 64, seed: int = 0,
                       batch_size: int = 16) -> "TemplateFraming":
        """The template of ``generator``'s faces: FaceMesh (``facemesh``, with its generator-image
        margin) on ``n_samples`` faces drawn with ``seed``, averaged."""
        if n_samples < 1:
            raise InputError(f"n_samples must be positive, got {n_samples}")
        points = []
        with torch.no_grad():
            codes = generator.sample(n_samples, seed=seed)
            for part in codes.split(batch_size):
                images = generator.synthesize(part).float()
                points.append(facemesh.landmarks(images.to(module_device(facemesh) or images.device)).cpu())
        mean = torch.cat(points).double().mean(0)
        return cls(((mean + 0.5) / generator.resolution).float(), n_samples)

    def window(self, landmarks: torch.Tensor) -> Window:
        p = landmarks.double()
        q = self.template.double()  # unit-side image coordinates, pixel edges at 0 and 1
        mp, mq = p.mean(0), q.mean(0)
        pc, qc = p - mp, q - mq
        u, s, vt = torch.linalg.svd(qc.T @ pc / len(p))
        d = torch.ones(2, dtype=p.dtype)
        d[1] = 1.0 if torch.det(u @ vt) >= 0 else -1.0
        rotation = u @ torch.diag(d) @ vt
        scale = float((s * d).sum() / pc.square().sum(1).mean())
        shift = mq - scale * rotation @ mp  # q = scale · R p + shift
        centre = rotation.T @ (torch.tensor([0.5, 0.5], dtype=p.dtype) - shift) / scale
        x_axis = rotation.T @ torch.tensor([1.0, 0.0], dtype=p.dtype) / scale
        return centre.float(), x_axis.float()

    def describe(self) -> str:
        return f"template of the generator's FaceMesh points ({self.samples} faces)"


def default_framing(generator: Generator, facemesh) -> Framing:
    """The generator's own framing (:attr:`Generator.face_framing`): FFHQ's recipe (StyleGAN2), or a
    template of the generator's own faces."""
    if generator.face_framing == "ffhq":
        return FFHQFraming()
    return TemplateFraming.from_generator(generator, facemesh)


@dataclass
class AlignedFaces:
    """Photos aligned to a generator's framing.

    Attributes:
        images: ``(N, 3, R, R)`` in ``[-1, 1]``, at the generator's resolution.
        names: one per face: the photo's name, with ``#k`` appended when a photo gave several faces.
        detections: the BlazeFace detection of each face (photo pixels).
        windows: ``(N, 2, 2)``: per face, the window's centre and top-edge vector in photo pixels
            (the aligned image is that square, turned and scaled).
        outside: the fraction of each aligned image that lay outside its photo (filled by
            replicating the photo's border).
        framing: how the windows were chosen, in words.
        skipped: with ``skip_unusable``: ``(photo, reason)`` of each photo left out.
    """

    images: torch.Tensor
    names: list[str]
    detections: list[FaceDetection]
    windows: torch.Tensor
    outside: torch.Tensor
    framing: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


def _outside_fraction(shape: tuple[int, int], centre: torch.Tensor, x_axis: torch.Tensor, samples: int = 32) -> float:
    along = x_axis.double()
    points = window_positions(centre.double(), along, torch.stack([-along[1], along[0]]), samples)
    h, w = shape
    inside = (points[..., 0] >= -0.5) & (points[..., 0] <= w - 0.5) & (points[..., 1] >= -0.5) & (points[..., 1] <= h - 0.5)
    return float(1 - inside.double().mean())


def align_faces(photos: PhotoSource, generator: Generator, *, detector: BlazeFaceDetector | None = None,
                facemesh=None, framing: Framing | None = None, multiple: Literal["error", "largest", "all"] = "error",
                min_face_size: float | None = None, skip_unusable: bool = False, progress: bool = False) -> AlignedFaces:
    """Detect, landmark and align the face of each photo to ``generator``'s framing.

    Args:
        photos: a tensor ``(N, 3, H, W)`` in ``[-1, 1]``, a file, a folder, a list of files, or
            :class:`~cfexplain.photos.Photo` objects.
        generator: the generator whose framing and resolution the faces get.
        detector: the face detector (default :func:`cfexplain.zoo.blazeface`).
        facemesh: the FaceMesh landmark detector (default :func:`cfexplain.zoo.facemesh`).
        framing: default :func:`default_framing` (FFHQ for StyleGAN2, else a template of the
            generator's faces).
        multiple: a photo with several faces raises (``"error"``), gives its largest face
            (``"largest"``), or all of them (``"all"``, named ``photo#1``, ``photo#2`` …).
        min_face_size: the smallest detection box side, in photo pixels (default: a quarter of
            the generator's resolution): smaller faces would be blown up past what the photo holds.
        skip_unusable: leave out photos without a usable face (listed in ``skipped`` with the
            reason) instead of raising; at least one must remain.
        progress: show a progress bar.

    Raises:
        PhotoError: naming the photo, when it cannot be read, has no face, several faces (with
            ``multiple="error"``) or only faces smaller than ``min_face_size`` (without
            ``skip_unusable``; with it, when no photo remains).
    """
    from .. import zoo

    if multiple not in ("error", "largest", "all"):
        raise InputError(f"multiple must be 'error', 'largest' or 'all', got {multiple!r}")
    items = load_photos(photos)
    detector = detector if detector is not None else zoo.blazeface()
    facemesh = facemesh if facemesh is not None else zoo.facemesh()
    framing = framing if framing is not None else default_framing(generator, facemesh)
    resolution = generator.resolution
    smallest = resolution / 4 if min_face_size is None else float(min_face_size)
    images, names, detections, windows, outside, skipped = [], [], [], [], [], []
    for photo in tqdm(items, desc="aligning", unit="photo", disable=not progress):
        try:
            large = _usable_faces(detector, photo, smallest, resolution, multiple)
        except PhotoError as error:
            if not skip_unusable:
                raise
            skipped.append((photo.name, error.reason))
            continue
        for k, face in enumerate(large):
            points = photo_landmarks(facemesh, photo.pixels, face)
            centre, x_axis = framing.window(points)
            images.append(square_crop(photo.pixels, centre, x_axis, resolution).clamp(-1, 1))
            names.append(photo.name if len(large) == 1 else f"{photo.name}#{k + 1}")
            detections.append(face)
            windows.append(torch.stack([centre, x_axis]))
            outside.append(_outside_fraction(tuple(photo.pixels.shape[-2:]), centre, x_axis))
    if not images:
        raise PhotoError(items[0].name if len(items) == 1 else f"all {len(items)} photos", "no face",
                         "no photo has a usable face: " + "; ".join(f"{n}: {r}" for n, r in skipped[:5]))
    return AlignedFaces(torch.stack(images), names, detections, torch.stack(windows), torch.tensor(outside),
                        framing.describe(), skipped)


def _usable_faces(detector: BlazeFaceDetector, photo: Photo, smallest: float, resolution: int,
                  multiple: str) -> list[FaceDetection]:
    """The faces of ``photo`` to align, or a :class:`PhotoError` saying why there are none."""
    faces = detector.detect(photo.pixels)
    if not faces:
        raise PhotoError(photo.name, "no face", f"the detector found no face (min score {detector.min_score})")
    large = [face for face in faces if face.size >= smallest]
    if not large:
        raise PhotoError(photo.name, "face too small",
                         f"the largest face is {max(f.size for f in faces):.0f} px, below min_face_size "
                         f"{smallest:.0f} px for a {resolution}² generator")
    if len(large) > 1 and multiple == "error":
        raise PhotoError(photo.name, "several faces",
                         f"{len(large)} faces of at least {smallest:.0f} px; crop the photo, or pass "
                         f"multiple='largest' or 'all' (on the command line: --multiple-faces largest|all, "
                         f"or --skip-unusable to leave it out)")
    return [max(large, key=lambda f: f.size)] if multiple == "largest" else large
