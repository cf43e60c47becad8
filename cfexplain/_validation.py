"""Checks of settings values, written once: each raises :class:`~cfexplain.errors.InputError` naming
the setting, what it must be and what it got."""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import InputError

__all__ = ["check_positive_int", "check_number", "check_int", "check_fits_in_memory"]


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


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (``None`` where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(needed: float, what: str, way_out: str, *, available: int | None = None,
                         where: str = "this machine") -> None:
    """Refuse, before any work, a request whose tensors alone (``needed`` bytes, as estimated by the
    caller) exceed ``available`` bytes (default: the machine's physical memory): an
    :class:`InputError` with both numbers and ``way_out``, rather than an allocation failure after
    minutes of work."""
    total = physical_memory() if available is None else available
    if total is not None and needed > total:
        raise InputError(f"{what} needs at least {needed / 2**30:.3g} GiB for its tensors alone; {where} has "
                         f"{total / 2**30:.3g} GiB. {way_out}")
