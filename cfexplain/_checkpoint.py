"""A checkpoint file: the state of a long run, saved atomically and read without running code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._integrity import load_tensors
from ._torch_files import write_torch_file

__all__ = ["Checkpoint"]


class Checkpoint:
    """The saved state of one run at ``path``: a dict of tensors and plain values (``torch.save``
    with an atomic rename, so a killed run leaves the previous state whole; read back with
    ``weights_only``). ``what`` names the run in errors about a damaged file."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is none yet
        (:class:`~cfexplain.errors.CorruptCheckpointError` for a damaged file)."""
        if not self.path.is_file():
            return None
        return load_tensors(self.path, f"{self.what} checkpoint")

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state with ``state``."""
        write_torch_file(self.path, state)
