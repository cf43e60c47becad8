"""From the user's photos to codes the explainer can search from: align, invert, gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..classifiers import Classifier
from ..errors import InputError
from ..generators.base import Generator
from .alignment import align_faces
from .faithfulness import PhotoFaces, check_faithfulness
from .inversion import InversionResult, invert
from .io import PhotoSource, load_photos

__all__ = ["Photos", "photo_codes"]


def photo_codes(generator: Generator, classifier: Classifier, space: str, images: PhotoSource | InversionResult, *,
                align: bool | Literal["auto"] = "auto", alignment: Mapping[str, Any] | None = None,
                inversion: Mapping[str, Any] | None = None,
                progress: bool = False) -> tuple[torch.Tensor, PhotoFaces, InversionResult]:
    """Codes in ``space`` for the faces of ``images``, and the faithfulness gate's record of them.

    Args:
        generator, classifier: the generator to invert and the classifier to gate with.
        space: the space of the codes (the subspaces' space).
        images: an :class:`InversionResult` (used as it is: its space must be ``space``), or photos
            (a tensor ``(N, 3, H, W)`` in ``[-1, 1]``, a file, a folder, a list of files).
        align: align the photos to the generator's framing (:func:`align_faces`); ``"auto"``
            aligns files and folders, and tensors that are not at the generator's resolution
            (tensors at its resolution are taken as aligned already).
        alignment, inversion: keyword options of :func:`align_faces` and :func:`invert`.
        progress: show progress bars.

    Returns:
        ``(codes, photos, inversion)``.
    """
    skipped: list[tuple[str, str]] = []
    if isinstance(images, InversionResult):
        result = images
        if result.space != space:
            raise InputError(f"the inversion's codes are in space {result.space!r}, the subspaces' in {space!r}: "
                             f"invert with space={space!r}")
    else:
        if align not in (True, False, "auto"):
            raise InputError(f"align must be True, False or 'auto', got {align!r}")
        aligned_already = isinstance(images, torch.Tensor) and images.shape[-1] == generator.resolution \
            and images.shape[-2] == generator.resolution
        photos = load_photos(images)
        if align is True or (align == "auto" and not aligned_already):
            faces = align_faces(photos, generator, progress=progress, **dict(alignment or {}))
            pixels, names, skipped = faces.images, faces.names, faces.skipped
        else:
            pixels, names = torch.stack([p.pixels for p in photos]), [p.name for p in photos]
        options = {"names": names, "progress": progress, **dict(inversion or {})}
        result = invert(generator, pixels, space=space, **options)
    codes = result.codes.to(generator.device, generator.dtype)
    return codes, check_faithfulness(classifier, result, skipped=skipped), result


@dataclass(frozen=True)
class Photos:
    """Photos as the faces of an audit: where they are, and how to align and invert them.

    ``audit(generator, classifier, subspaces, faces=Photos("my_photos/", alignment={"multiple":
    "largest"}))`` aligns, inverts and gates them with :func:`photo_codes`.

    Attributes:
        images: an :class:`InversionResult`, or photos (a tensor ``(N, 3, H, W)`` in ``[-1, 1]``,
            a file, a folder, a list of files).
        align, alignment, inversion: as :func:`photo_codes` takes them.
    """

    images: PhotoSource | InversionResult
    align: bool | Literal["auto"] = "auto"
    alignment: Mapping[str, Any] | None = None
    inversion: Mapping[str, Any] | None = None

    def codes(self, generator: Generator, classifier: Classifier, space: str, *,
              progress: bool = False) -> tuple[torch.Tensor, PhotoFaces, InversionResult]:
        """:func:`photo_codes` of these photos: ``(codes, photos, inversion)``."""
        return photo_codes(generator, classifier, space, self.images, align=self.align, alignment=self.alignment,
                           inversion=self.inversion, progress=progress)
