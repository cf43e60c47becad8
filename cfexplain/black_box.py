"""Classifiers reached only through their predictions: a function of image arrays, or an ONNX file
run by onnxruntime.

:class:`QueryFunction` turns preprocessed image batches into the arrays such a function takes
(``uint8`` or float pixels, NHWC or NCHW), calls it in batches, caches its answer per image, counts
the images it sent, and checks what comes back (shape, NaN, probabilities that sum to one). A
:class:`~cfexplain.Classifier` around it has no gradients (``differentiable`` is false), so the
counterfactual search runs from queries only (:mod:`cfexplain.counterfactual.queries`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from .errors import InputError, ModelOutputError

__all__ = ["DTYPES", "QueryFunction"]

DTYPES = ("uint8", "float32", "float64", "float16")
"""The pixel types a black-box function may take."""


class QueryFunction:
    """A black-box classifier function as a Classifier's model.

    Args:
        function: maps an array of images (``(N, H, W, 3)`` for NHWC, ``(N, 3, H, W)`` for NCHW)
            to an array-like of ``(N, K)`` scores (or ``(N,)`` for one sigmoid head).
        layout: ``"NHWC"`` or ``"NCHW"``.
        dtype: the pixel type the function takes (``"uint8"``: rounded and clipped to 0–255).
        batch_size: the most images per call.
        cache: answer repeated images from a cache instead of calling again.
        simplex: the function returns softmax probabilities: each row must sum to one.
        outputs: the number of scores per image it must return (``None``: not checked here).

    Attributes:
        queries: images sent to the function so far; calls: calls made; cache_hits: images
            answered from the cache.
    """

    differentiable = False

    def __init__(self, function: Callable[[np.ndarray], Any], *, layout: Literal["NHWC", "NCHW"] = "NHWC",
                 dtype: str = "uint8", batch_size: int = 64, cache: bool = True, simplex: bool = False,
                 outputs: int | None = None) -> None:
        if not callable(function):
            raise InputError(f"the black-box function must be callable, got {type(function).__name__}")
        if layout not in ("NHWC", "NCHW"):
            raise InputError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.function, self.layout, self.dtype, self.batch_size = function, layout, dtype, batch_size
        self.simplex, self.outputs = simplex, outputs
        self._cache: dict[bytes, np.ndarray] | None = {} if cache else None
        self.queries = self.calls = self.cache_hits = 0
        self.__name__ = getattr(function, "__name__", type(function).__name__)

    def arrays(self, images: torch.Tensor) -> np.ndarray:
        """Preprocessed images ``(N, 3, H, W)`` as the function takes them."""
        x = images.detach().float().cpu()
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        if self.dtype == "uint8":
            return x.round().clamp(0, 255).to(torch.uint8).contiguous().numpy()
        return x.contiguous().numpy().astype(self.dtype)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        arrays = self.arrays(images)
        keys = [hashlib.blake2b(a.tobytes(), digest_size=16).digest() for a in arrays] if self._cache is not None \
            else [None] * len(arrays)
        rows: list[np.ndarray | None] = [self._cache.get(k) if self._cache is not None else None for k in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        self.cache_hits += len(arrays) - len(missing)
        for start in range(0, len(missing), self.batch_size):
            part = missing[start:start + self.batch_size]
            answers = self._ask(arrays[part])
            for i, answer in zip(part, answers):
                rows[i] = answer
                if self._cache is not None:
                    self._cache[keys[i]] = answer
        scores = np.stack(rows) if rows else np.zeros((0, 1), np.float32)
        return torch.from_numpy(scores).to(device=images.device, dtype=images.dtype)

    def _ask(self, batch: np.ndarray) -> np.ndarray:
        """One call, its answer checked."""
        self.calls += 1
        self.queries += len(batch)
        try:
            answer = self.function(batch)
        except Exception as exc:  # the user's function failed: say on what
            raise ModelOutputError(f"the black-box function {self.__name__!r} failed on a batch of {batch.shape} "
                                   f"{batch.dtype} images: {type(exc).__name__}: {exc}") from exc
        try:
            scores = np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelOutputError(f"the black-box function returned {type(answer).__name__}, not an array of "
                                   f"scores") from exc
        if scores.ndim not in (1, 2) or scores.shape[0] != len(batch):
            raise ModelOutputError(f"the black-box function returned shape {scores.shape} for {len(batch)} images; "
                                   f"expected (N, K) scores, one row per image")
        columns = 1 if scores.ndim == 1 else scores.shape[1]
        if self.outputs is not None and columns != self.outputs:
            raise ModelOutputError(f"the black-box function returned shape {scores.shape}, expected (N, {self.outputs}): "
                                   f"one score per label")
        if not np.all(np.isfinite(scores)):
            raise ModelOutputError("the black-box function returned NaN or infinite scores")
        if self.simplex and (scores.ndim != 2 or np.any(scores < -1e-6) or np.any(np.abs(scores.sum(axis=1) - 1) > 1e-3)):
            raise ModelOutputError("the black-box function's softmax probabilities do not sum to one per image (or "
                                   "are negative): declare scores='logits' if it returns scores, or check its output")
        return scores.astype(np.float32)
