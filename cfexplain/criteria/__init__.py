"""Criteria: differentiable measurements of face images, and the named face presets.

A criterion's Jacobian with respect to the latent codes gives the metric used to learn
interpretable subspaces (see :mod:`cfexplain.subspaces`).
"""

from .base import Context, Criterion, resize_images
from .landmarks import BlendedPixels, LandmarkShape
from .other import FunctionCriterion, Identity
from .regions import ColorResidual, HighFrequency, RegionColor, RegionPixels, region_mask

__all__ = [
    "BlendedPixels",
    "ColorResidual",
    "Context",
    "Criterion",
    "FunctionCriterion",
    "HighFrequency",
    "Identity",
    "LandmarkShape",
    "RegionColor",
    "RegionPixels",
    "region_mask",
    "resize_images",
]
