"""Reading the user's photos: files, folders or tensors, each with a name that errors can cite."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, PhotoError, ShapeError

__all__ = ["Photo", "load_photos", "pixels_of", "PHOTO_SUFFIXES"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""File suffixes a folder is searched for (case-insensitive)."""

PhotoSource = str | os.PathLike | torch.Tensor | Sequence[str | os.PathLike] | Sequence["Photo"]


@dataclass(frozen=True)
class Photo:
    """One photo: ``pixels (3, H, W)`` float in ``[-1, 1]`` (grey photos repeated to RGB) and its name."""

    name: str
    pixels: torch.Tensor


def pixels_of(image) -> torch.Tensor:
    """A PIL image as ``(3, H, W)`` float pixels in ``[-1, 1]`` (grey and RGBA images converted to RGB)."""
    rgb = np.asarray(image.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


MAX_PHOTO_PIXELS = 100_000_000
"""The most pixels a photo file may have (decoding one takes 16 bytes a pixel as floats)."""


def _read(path: Path) -> Photo:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL warns above 89 megapixels; the limit here is MAX_PHOTO_PIXELS
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > MAX_PHOTO_PIXELS:
                raise PhotoError(str(path), "unreadable", f"{width}×{height} pixels, more than the "
                                 f"{MAX_PHOTO_PIXELS // 1_000_000} megapixels a photo may have; scale it down first")
            pixels = pixels_of(image)
    except FileNotFoundError:
        raise PhotoError(str(path), "unreadable", "no such file") from None
    except Image.DecompressionBombError as exc:
        raise PhotoError(str(path), "unreadable", f"too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PhotoError(str(path), "unreadable", f"not an image PIL can read ({exc})") from exc
    return Photo(str(path), pixels)


def _from_tensor(images: torch.Tensor) -> list[Photo]:
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"photos as a tensor must be (N, 3|1, H, W) or (3|1, H, W) in [-1, 1], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"photo tensors must be float in [-1, 1], got {images.dtype} (uint8 pixels: x / 127.5 - 1)")
    if not bool(torch.isfinite(images).all()):
        raise InputError("photo tensors hold NaN or infinite values; images must be finite, in [-1, 1]")
    if images.numel() and (images.min() < -1.001 or images.max() > 1.001):
        raise InputError(f"photo tensors must be in [-1, 1], got values in [{float(images.min()):.3g}, "
                         f"{float(images.max()):.3g}]")
    return [Photo(f"images[{i}]", image.detach().float().expand(3, -1, -1).cpu()) for i, image in enumerate(images)]


def load_photos(source: PhotoSource) -> list[Photo]:
    """The photos of ``source``: an ``(N, 3, H, W)`` tensor in ``[-1, 1]``, an image file, a folder
    (its image files, :data:`PHOTO_SUFFIXES`, sorted by name, not recursive), a list of files, or
    a list of :class:`Photo` objects (returned as they are).

    Raises:
        PhotoError: a file cannot be read (named); InputError: a folder without images, or an empty list.
    """
    if isinstance(source, torch.Tensor):
        return _from_tensor(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
            if not files:
                raise InputError(f"{path}: no image files ({', '.join(PHOTO_SUFFIXES)}) in this folder")
            return [_read(p) for p in files]
        return [_read(path)]
    paths = list(source)
    if not paths:
        raise InputError("no photos given")
    if all(isinstance(p, Photo) for p in paths):
        return paths
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise InputError("photos must be a tensor, a file, a folder, or a list of files")
    return [_read(Path(p)) for p in paths]
