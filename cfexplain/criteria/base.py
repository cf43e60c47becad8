"""The criterion protocol: a differentiable function of an image that measures one aspect of it.

A criterion maps a batch of images to ``(N, m)`` outputs. Its Jacobian with respect to the latent
codes defines the metric ``M = E[JᵀJ]``: ``δᵀMδ`` is the mean squared change of the outputs
under an edit ``δ``. Criteria work in two steps:

1. :meth:`Criterion.prepare` — once per sample, **without gradient**: whatever is held fixed
   while the image changes (a parser's region mask, a landmark mesh and its barycentric weights);
2. :meth:`Criterion.outputs` — differentiable: the measured quantity of (possibly edited) images,
   given the prepared context.

Images are generator images (float NCHW RGB, about ``[-1, 1]``). Every output row depends only on
its own image and context row, so Jacobians of a batch are per-sample (block diagonal).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import torch

from ..analyzers.base import check_images, resize_to_square
from ..errors import InputError

__all__ = ["Criterion", "Context", "resize_images"]

Context = Mapping[str, Any]
"""What :meth:`Criterion.prepare` returns: tensors with the batch as their first dimension (and
any other fixed data). Treated as constants when outputs are differentiated."""


def resize_images(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Bilinear resize to ``resolution²`` (:func:`~cfexplain.analyzers.base.resize_to_square`); ``None`` keeps
    the size."""
    return images if resolution is None else resize_to_square(images, resolution)


class Criterion(abc.ABC):
    """A measurable aspect of a face image.

    Subclasses implement :meth:`outputs` and, when they need fixed per-sample data, :meth:`prepare`.

    Attributes:
        name: a short name used in reports, provenance and error messages.
    """

    name: str = "criterion"

    @property
    def analyzers(self) -> tuple[object, ...] | None:
        """The models :meth:`outputs` runs on the images (a landmark detector, an embedding
        network), ``()`` when it is plain arithmetic on the pixels (masks and meshes fixed by
        :meth:`prepare`), or ``None`` when unknown (the default).

        The Jacobian engine reads it to price each criterion's passes: a criterion whose models
        already run in a forward-mode pass of other criteria joins that pass at almost no cost.
        """
        return None

    def prepare(self, images: torch.Tensor) -> Context:
        """Per-sample constants for :meth:`outputs` (called without gradient). Default: none."""
        return {}

    @abc.abstractmethod
    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        """``(N, m)`` differentiable outputs for images ``(N, 3, H, W)`` and their context."""

    def __call__(self, images: torch.Tensor, context: Context | None = None) -> torch.Tensor:
        """Outputs of ``images``, preparing the context from the same images if none is given."""
        images = check_images(images)
        if context is None:
            with torch.no_grad():
                context = self.prepare(images.detach())
        out = self.outputs(images, context)
        if out.ndim != 2 or out.shape[0] != images.shape[0]:
            raise InputError(f"criterion {self.name!r} returned shape {tuple(out.shape)}, expected (N, m)")
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (type and settings) for provenance."""
        settings = {k: _plain(v) for k, v in vars(self).items() if not k.startswith("_")}
        return {"type": type(self).__name__, **settings}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return type(value).__name__
