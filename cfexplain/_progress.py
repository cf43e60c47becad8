"""Status lines for long work: one line on standard error before each step, beside tqdm's bars."""

from __future__ import annotations

import sys

__all__ = ["status"]


def status(message: str, enabled: bool = True) -> None:
    """Write ``cfexplain: message`` to standard error (through tqdm, so that a running bar is not
    broken), when ``enabled``."""
    if enabled:
        from tqdm.auto import tqdm

        tqdm.write(f"cfexplain: {message}", file=sys.stderr)
