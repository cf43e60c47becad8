from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("CFEXPLAIN_FIXTURES", REPO.parent / "shared" / "fixtures"))


def fixture_path(*parts: str) -> Path:
    """A file under the shared golden fixtures; fails loudly when they are not where expected."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"golden fixture {path} not found; the tests read ../shared/fixtures beside the project "
            "(or the folder named by CFEXPLAIN_FIXTURES)"
        )
    return path


@pytest.fixture(scope="session")
def sg2_expected() -> dict[str, torch.Tensor | np.ndarray]:
    data = np.load(fixture_path("stylegan2", "expected_res32.npz"))
    return {k: torch.from_numpy(v) if v.dtype.kind == "f" else v for k, v in data.items()}


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
