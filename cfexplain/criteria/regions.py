"""Criteria on parser regions: pixels inside/outside a region, its mean colour, high frequencies."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..analyzers.base import FaceParser
from ..errors import InputError
from .._shared import shared
from .base import Context, Criterion, resize_images
from ..imaging import bilinear_resize

__all__ = ["RegionPixels", "RegionColor", "ColorResidual", "HighFrequency", "region_mask"]


def _morphology(mask: torch.Tensor, dilation: float, erosion: float) -> torch.Tensor:
    """Dilate then erode a 0/1 mask ``(N, 1, H, W)`` with square elements whose side is the given
    fraction of the image size (ICE's ``ks_ratio``)."""
    size = mask.shape[-1]
    for amount, grow in ((dilation, True), (erosion, False)):
        side = int(round(amount * size))
        if side <= 1:
            continue
        radius = side // 2
        source = mask if grow else 1 - mask
        grown = F.max_pool2d(source, 2 * radius + 1, stride=1, padding=radius)
        mask = grown if grow else 1 - grown
    return mask


def region_mask(parser: FaceParser, images: torch.Tensor, regions: Sequence[str], *, dilation: float = 0.0,
                erosion: float = 0.0, resolution: int | None = None) -> torch.Tensor:
    """The hard 0/1 mask ``(N, 1, r, r)`` of ``regions`` at ``resolution`` (no gradient)."""
    with torch.no_grad():
        mask = shared(parser, images, lambda: parser.parse(images)).mask(*regions, soft=False)
        mask = _morphology(mask, dilation, erosion)
        if resolution is not None and mask.shape[-1] != resolution:
            mask = (F.interpolate(mask, size=(resolution, resolution), mode="area") > 0.5).to(mask.dtype)
    return mask


class _RegionCriterion(Criterion):
    """Shared settings of the region criteria."""

    name_prefix = ""

    def __init__(self, parser: FaceParser, regions: Sequence[str] | str, *, dilation: float = 0.0,
                 erosion: float = 0.0, resolution: int | None = 64, name: str | None = None) -> None:
        if not isinstance(parser, FaceParser):
            raise InputError(f"parser must be a FaceParser, got {type(parser).__name__}")
        self.parser = parser
        self.regions = (regions,) if isinstance(regions, str) else tuple(regions)
        if not self.regions:
            raise InputError("at least one region is needed")
        missing = [r for r in self.regions if r not in parser.regions and r not in parser.class_names]
        if missing:
            raise InputError(f"the parser cannot express {missing}; it has classes {list(parser.class_names)} "
                             f"and regions {list(parser.regions)}")
        self.dilation, self.erosion, self.resolution = dilation, erosion, resolution
        self.name = name or self.name_prefix + "+".join(self.regions)

    @property
    def analyzers(self) -> tuple[object, ...]:
        """No model: the parser's mask is fixed by :meth:`prepare`."""
        return ()

    def prepare(self, images: torch.Tensor) -> Context:
        return {"mask": region_mask(self.parser, images, self.regions, dilation=self.dilation, erosion=self.erosion,
                                    resolution=self.resolution or images.shape[-1])}


class RegionPixels(_RegionCriterion):
    """The pixels inside (or outside) a parser region, at a working resolution.

    Outputs ``resize(x) · mask`` (or ``· (1 − mask)`` with ``inside=False``), flattened, cropped to the
    bounding box of the batch's masks. The mask is the parser's hard mask of the sample, after
    optional dilation/erosion, computed once without gradient.

    Args:
        parser: any :class:`~cfexplain.analyzers.FaceParser`.
        regions: region or class names (their union).
        inside: measure the region (True) or everything outside it (False).
        dilation, erosion: square structuring element side as a fraction of the image size
            (ICE's ``ks_ratio``: 0.01, 0.05, 0.1, 0.2 …); dilation first.
        resolution: working resolution (``None``: the image's).
    """

    def __init__(self, parser: FaceParser, regions: Sequence[str] | str, *, inside: bool = True,
                 dilation: float = 0.0, erosion: float = 0.0, resolution: int | None = 64, name: str | None = None) -> None:
        super().__init__(parser, regions, dilation=dilation, erosion=erosion, resolution=resolution, name=name)
        self.inside = inside
        if name is None:
            self.name = f"{'inside' if inside else 'outside'}:{self.name}"

    def prepare(self, images: torch.Tensor) -> Context:
        mask = super().prepare(images)["mask"]
        mask = mask if self.inside else 1 - mask
        rows = mask.amax(dim=(0, 1, 3)).nonzero()
        cols = mask.amax(dim=(0, 1, 2)).nonzero()
        if len(rows) == 0:  # an empty region: nothing to measure, keep one pixel of zeros
            box = (0, 1, 0, 1)
        else:
            box = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        top, bottom, left, right = box
        return {"mask": mask[..., top:bottom, left:right], "box": box}

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        top, bottom, left, right = context["box"]
        x = resize_images(images, self.resolution)[..., top:bottom, left:right]
        return (x * context["mask"]).flatten(1)


class RegionColor(_RegionCriterion):
    """The mean RGB colour inside a region: 3 outputs per image."""

    name_prefix = "colour:"

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        x = resize_images(images, self.resolution)
        mask = context["mask"]
        return (x * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp_min(1.0)


class ColorResidual(_RegionCriterion):
    """Everything but a region's mean colour: ``resize(x) − mean_colour · mask`` over the whole image.

    Kept invariant, it allows only changes of the region's mean colour (ICE's face-colour recipe).
    """

    name_prefix = "residual:"

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        x = resize_images(images, self.resolution)
        mask = context["mask"]
        mean = (x * mask).sum(dim=(2, 3), keepdim=True) / mask.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        return (x - mean * mask).flatten(1)


class HighFrequency(Criterion):
    """High frequencies of the image, ``x − up(down(x))`` at a working resolution (or the low-pass
    part with ``low=True``), optionally inside a parser region.

    Args:
        resolution: working resolution.
        cutoff: the resolution of the low-pass image (24 in ICE).
        low: return the low-pass part instead.
        parser, regions: restrict to a region (optional).
    """

    def __init__(self, *, resolution: int = 64, cutoff: int = 24, low: bool = False,
                 parser: FaceParser | None = None, regions: Sequence[str] | str = (), name: str | None = None) -> None:
        if cutoff >= resolution:
            raise InputError(f"cutoff ({cutoff}) must be below the working resolution ({resolution})")
        self.resolution, self.cutoff, self.low = resolution, cutoff, low
        self.parser = parser
        self.regions = (regions,) if isinstance(regions, str) else tuple(regions)
        if self.regions and parser is None:
            raise InputError("regions need a parser")
        self.name = name or ("low_frequency" if low else "high_frequency")

    @property
    def analyzers(self) -> tuple[object, ...]:
        """No model: resizing and the (fixed) region mask only."""
        return ()

    def prepare(self, images: torch.Tensor) -> Context:
        if not self.regions:
            return {}
        return {"mask": region_mask(self.parser, images, self.regions, resolution=self.resolution)}

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        x = resize_images(images, self.resolution)
        low = bilinear_resize(resize_images(x, self.cutoff), tuple(x.shape[-2:]))
        out = low if self.low else x - low
        if "mask" in context:
            out = out * context["mask"]
        return out.flatten(1)
