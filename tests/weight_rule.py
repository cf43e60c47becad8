"""The deterministic weight rule of the BiSeNet and FAN fixtures (../shared/fixtures/README.md §2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

P = 65521


def base_values(i: int, n: int) -> np.ndarray:
    k = np.arange(n, dtype=np.int64)
    a = 1 + (7919 * i + 104729) % 65520
    t = (a * (k % P) ** 2 + 3301 * k + 131 * i) % P
    return np.sin(t.astype(np.float64) * (2 * math.pi / P) + 0.7)


def rule_state_dict(keys_shapes_path: Path, gain: float) -> dict[str, torch.Tensor]:
    """Build every entry of ``keys_shapes.json`` by the rule (position i counts every entry)."""
    entries = json.loads(Path(keys_shapes_path).read_text())
    keys = {key for key, _, _ in entries}
    state: dict[str, torch.Tensor] = {}
    for i, (key, shape, _dtype) in enumerate(entries):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.int64)
            continue
        n = int(np.prod(shape)) if shape else 1
        base = base_values(i, n).reshape(shape)
        prefix = key.rsplit(".", 1)[0]
        leaf = key.rsplit(".", 1)[1]
        is_bn = f"{prefix}.running_mean" in keys
        if len(shape) >= 2:
            value = gain * base / math.sqrt(n / shape[0])
        elif is_bn and leaf == "weight":
            value = 1 + 0.1 * base
        elif is_bn and leaf == "running_var":
            value = 1 + 0.5 * np.abs(base)
        else:  # BatchNorm bias / running_mean, conv biases
            value = 0.1 * base
        state[key] = torch.from_numpy(np.asarray(value, dtype=np.float32).copy())
    return state
