"""Criteria from any model: an identity embedding, or any user function of the images."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import InputError
from .base import Context, Criterion

__all__ = ["Identity", "FunctionCriterion"]


class Identity(Criterion):
    """An identity (or any) embedding of the face, e.g. an ArcFace network.

    Args:
        embedding: maps generator images ``(N, 3, H, W)`` in ``[-1, 1]`` to ``(N, d)``; it owns
            its resizing and normalisation.
        normalize: L2-normalise the embedding (as face-recognition models compare them).
    """

    def __init__(self, embedding: Callable[[torch.Tensor], torch.Tensor], *, normalize: bool = True,
                 name: str = "identity") -> None:
        if not callable(embedding):
            raise InputError("embedding must be callable")
        self.embedding, self.normalize, self.name = embedding, normalize, name

    @property
    def analyzers(self) -> tuple[object, ...]:
        """The embedding."""
        return (self.embedding,)

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        features = self.embedding(images).flatten(1)
        return torch.nn.functional.normalize(features, dim=1) if self.normalize else features


class FunctionCriterion(Criterion):
    """Any differentiable user function ``images (N, 3, H, W) → (N, m)`` as a criterion."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], *, name: str | None = None) -> None:
        if not callable(function):
            raise InputError("function must be callable")
        self.function = function
        self.name = name or getattr(function, "__name__", "function")

    def outputs(self, images: torch.Tensor, context: Context) -> torch.Tensor:
        return self.function(images)
