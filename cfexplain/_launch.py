"""How this process was started: ``torchrun``'s environment variables (a bottom module that
imports nothing heavy, for the command line's checks before torch loads)."""

from __future__ import annotations

import os

__all__ = ["launched_by_torchrun", "processes_on_this_machine"]


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def processes_on_this_machine() -> int:
    """The processes ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``; 1 outside torchrun)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if launched_by_torchrun() else 1
