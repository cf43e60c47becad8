"""Sharing analyses (landmarks, parsings) of the same images between the criteria that need them."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import TypeVar

__all__ = ["shared_analyses", "shared"]

T = TypeVar("T")
_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cfexplain_shared_analyses", default=None)


@contextlib.contextmanager
def shared_analyses() -> Iterator[None]:
    """Within this block, analyses of the same image tensor by the same analyzer (landmarks,
    parsings) are computed once and shared by everything that asks for them."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared(analyzer: object, images: object, compute: Callable[[], T]) -> T:
    """``compute()``, or its earlier result for the same ``analyzer`` and ``images`` inside
    :func:`shared_analyses` (outside one, always ``compute()``)."""
    cache = _SHARED.get()
    if cache is None:
        return compute()
    key = (id(analyzer), id(images))
    if key not in cache:
        cache[key] = (analyzer, images, compute())  # holding the objects keeps their ids unique
    return cache[key][2]
