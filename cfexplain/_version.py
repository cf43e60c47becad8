"""The package version and the provenance record every saved artefact carries (a bottom module:
it imports nothing of cfexplain)."""

from __future__ import annotations

import platform
from typing import Any

__all__ = ["__version__", "software_provenance"]

__version__ = "0.1.0"


def software_provenance(**fields: Any) -> dict[str, Any]:
    """``{"cfexplain", "torch", "python"}`` versions and torch's CPU ``threads``, followed by ``fields``."""
    import torch

    return {"cfexplain": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), **fields}
