"""Generator images (float NCHW in [-1, 1]): converting them to pictures, sampling them at points."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ShapeError

__all__ = ["to_uint8", "to_pil", "image_grid", "bilinear_resize", "bilinear_sample", "window_positions", "window_points"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` floats in ``[-1, 1]`` → ``(N, H, W, C)`` uint8, clipped."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"images must be (N, 1|3, H, W), got {tuple(images.shape)}")
    pixels = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """One PIL image per item of an ``(N, C, H, W)`` batch in ``[-1, 1]``."""
    return [Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a) for a in to_uint8(images)]


def image_grid(images: torch.Tensor, *, columns: int | None = None, padding: int = 2) -> Image.Image:
    """Tile a batch into one picture, ``columns`` wide (about square by default)."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255, np.uint8)
    for i, tile in enumerate(tiles):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        canvas[top:top + h, left:left + w] = tile
    return Image.fromarray(canvas.squeeze(-1) if c == 1 else canvas)


def bilinear_resize(images: torch.Tensor, size: tuple[int, int], *, antialias: bool = True) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` images to ``size`` (height, width), differentiable in both
    modes (``torch.func.jvp`` included).

    Shrinking is antialiased unless ``antialias`` is false. Growing uses the antialiased kernel
    too, which is the same tent filter when growing: torch's plain bilinear upsampling on CPU
    rounds differently with the number of threads (up to 1e-7), which eigen-decompositions
    downstream amplify, while this path gives the same bits for any thread count."""
    height, width = size
    shrinking = images.shape[-2] > height or images.shape[-1] > width
    smooth = (antialias or not shrinking) and images.device.type != "mps"  # MPS has no antialiased kernel
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=smooth)


def bilinear_sample(images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Colours ``(N, C, K)`` of ``images (N, C, H, W)`` at pixel positions ``(N, K, 2)`` (x, y),
    bilinear, positions clamped to the border.

    Equivalent to ``grid_sample(..., align_corners=True, padding_mode="border")`` but written with
    ``gather``, so that it supports forward-mode differentiation (``torch.func.jvp``), which
    ``grid_sample`` does not."""
    n, c, h, w = images.shape
    x = positions[..., 0].clamp(0, w - 1)
    y = positions[..., 1].clamp(0, h - 1)
    x0 = x.detach().floor().clamp(max=w - 2).long() if w > 1 else torch.zeros_like(x, dtype=torch.long)
    y0 = y.detach().floor().clamp(max=h - 2).long() if h > 1 else torch.zeros_like(y, dtype=torch.long)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    flat = images.reshape(n, c, h * w)

    def at(dy: int, dx: int) -> torch.Tensor:
        index = ((y0 + dy).clamp(max=h - 1) * w + (x0 + dx).clamp(max=w - 1))[:, None, :].expand(-1, c, -1)
        return flat.gather(2, index)

    top = at(0, 0) * (1 - wx) + at(0, 1) * wx
    bottom = at(1, 0) * (1 - wx) + at(1, 1) * wx
    return top * (1 - wy) + bottom * wy


def window_positions(centre: torch.Tensor, x_axis: torch.Tensor, y_axis: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel positions ``(..., size, size, 2)`` (x, y) of the pixel centres of a square window:
    centred at ``centre (..., 2)``, its rows along ``x_axis`` and its columns along ``y_axis``
    (``(..., 2)`` vectors whose lengths are the window's side), row-major from the top left."""
    steps = (torch.arange(size, dtype=centre.dtype, device=centre.device) + 0.5) / size - 0.5
    return (centre[..., None, None, :] + steps[None, :, None] * x_axis[..., None, None, :]
            + steps[:, None, None] * y_axis[..., None, None, :])


def window_points(centre: torch.Tensor, x_axis: torch.Tensor, y_axis: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Image positions ``(..., K, 2)`` of points ``unit (..., K, 2)`` given in window coordinates
    (window-centred, in window sides) of the windows of :func:`window_positions`."""
    return centre[..., None, :] + unit[..., 0:1] * x_axis[..., None, :] + unit[..., 1:2] * y_axis[..., None, :]
