"""Checks of settings values, written once: each raises :class:`~cfexplain.errors.InputError` naming
the setting, what it must be and what it got."""

from __future__ import annotations

import math
from typing import Any

from .errors import InputError

__all__ = ["check_positive_int", "check_number", "check_int"]


def check_int(name: str, value: Any, *, minimum: int | None = None) -> None:
    """An ``int`` (not a ``bool``), at least ``minimum`` where given."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = f" ≥ {minimum}" if minimum is not None else ""
        raise InputError(f"{name} must be an int{bound}, got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """An ``int`` ≥ 1."""
    check_int(name, value, minimum=1)


def check_number(name: str, value: Any, *, zero: bool = False, below: float | None = None) -> None:
    """A finite positive number (non-negative with ``zero``), and smaller than ``below`` where given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not zero) or (below is not None and value >= below):
        kind = "non-negative" if zero else "positive"
        bound = f" below {below:g}" if below is not None else ""
        raise InputError(f"{name} must be a {kind} finite number{bound}, got {value!r}")
