"""FAN 2-D landmark detector (68 points, four stacked hourglasses), a clean re-implementation.

The network of face-alignment's ``2DFAN4`` checkpoint: a stem (7×7 stride-2 convolution, three
bottleneck blocks, average pooling), then four hourglass modules of depth 4 with 256 features,
each emitting 68 heat maps at 1/4 of the 256² input; the last module's maps are used. Parameter
names follow the ``.pth.tar`` state dict, so :meth:`FANLandmarks.from_checkpoint` reads it directly;
face-alignment's TorchScript ``.zip`` archives are accepted too.

Landmarks are read from the heat maps with a differentiable *local soft-argmax* (see
:func:`local_soft_argmax`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._state_dict import load_state_dict_file, load_state_strict
from ..errors import CheckpointNotFoundError, CorruptCheckpointError, ShapeError, describe_exception
from .base import LandmarkDetector, resize_to_square

__all__ = ["FAN", "FANLandmarks", "IBUG68_GROUPS", "local_soft_argmax"]

IBUG68_GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "right_brow": tuple(range(17, 22)),
    "left_brow": tuple(range(22, 27)),
    "brows": tuple(range(17, 27)),
    "nose_bridge": tuple(range(27, 31)),
    "nose_base": tuple(range(31, 36)),
    "nose": tuple(range(27, 36)),
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "eyes": tuple(range(36, 48)),
    "outer_lips": tuple(range(48, 60)),
    "inner_lips": tuple(range(60, 68)),
    "mouth": tuple(range(48, 68)),
}
"""The iBUG 300-W 68-point groups; ``left``/``right`` are the subject's (``right_eye`` appears on
the image's left)."""


class _ConvBlock(nn.Module):
    """Pre-activation bottleneck: three 3×3 convolutions (C/2, C/4, C/4 channels), concatenated,
    plus the (projected) input."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out // 2)
        self.conv2 = nn.Conv2d(c_out // 2, c_out // 4, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out // 4)
        self.conv3 = nn.Conv2d(c_out // 4, c_out // 4, 3, 1, 1, bias=False)
        self.downsample = None
        if c_in != c_out:
            self.downsample = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat([out1, out2, out3], dim=1) + shortcut


class _HourGlass(nn.Module):
    """Recursive hourglass: at each level an upper branch at full resolution and a lower branch
    (average-pooled, one level deeper, nearest up-sampled) are added."""

    def __init__(self, depth: int, features: int) -> None:
        super().__init__()
        self.depth = depth
        self._add_level(depth, features)

    def _add_level(self, level: int, features: int) -> None:
        # Registration order follows the checkpoint: upper and lower blocks, the deeper levels,
        # then the block after the recursion.
        self.add_module(f"b1_{level}", _ConvBlock(features, features))
        self.add_module(f"b2_{level}", _ConvBlock(features, features))
        if level > 1:
            self._add_level(level - 1, features)
        else:
            self.add_module("b2_plus_1", _ConvBlock(features, features))
        self.add_module(f"b3_{level}", _ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = getattr(self, f"b1_{level}")(x)
        lower = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        lower = self._level(level - 1, lower) if level > 1 else self.b2_plus_1(lower)
        lower = getattr(self, f"b3_{level}")(lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """Face Alignment Network: ``forward(x)`` takes RGB in ``[0, 1]`` at 256² and returns the list
    of each module's heat maps ``(N, num_points, 64, 64)``."""

    def __init__(self, num_modules: int = 4, num_points: int = 68) -> None:
        super().__init__()
        self.num_modules = num_modules
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = _ConvBlock(64, 128)
        self.conv3 = _ConvBlock(128, 128)
        self.conv4 = _ConvBlock(128, 256)
        for i in range(num_modules):
            self.add_module(f"m{i}", _HourGlass(4, 256))
            self.add_module(f"top_m_{i}", _ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, num_points, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(num_points, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        previous, outputs = x, []
        for i in range(self.num_modules):
            features = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(previous))
            features = F.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(features)))
            heatmaps = getattr(self, f"l{i}")(features)
            outputs.append(heatmaps)
            if i < self.num_modules - 1:
                previous = previous + getattr(self, f"bl{i}")(features) + getattr(self, f"al{i}")(heatmaps)
        return outputs


def local_soft_argmax(heatmaps: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Differentiable peak positions ``(N, P, 2)`` as ``(x, y)`` in heat-map pixels.

    For each map, the window of ``(2·radius + 1)²`` pixels around the arg-max is taken, negative
    values (background) are clipped to zero, and the position is the mean of the window's pixel
    coordinates weighted by those values. Only the local peak counts, so distant background
    responses, positive or negative, do not bias the estimate; the window's position is piecewise
    constant, the weights carry the gradient. Windows are clipped at the map borders.
    """
    n, p, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, p, h * w)
    peak = flat.argmax(dim=-1)
    py, px = peak // w, peak % w
    offsets = torch.arange(-radius, radius + 1, device=heatmaps.device)
    ys = (py[..., None] + offsets).clamp(0, h - 1)  # (N, P, K)
    xs = (px[..., None] + offsets).clamp(0, w - 1)
    index = (ys[..., :, None] * w + xs[..., None, :]).reshape(n, p, -1)  # (N, P, K²)
    weights = flat.gather(-1, index).clamp_min(0) + 1e-12
    coords_x = xs[..., None, :].expand(-1, -1, offsets.numel(), -1).reshape(n, p, -1).to(heatmaps.dtype)
    coords_y = ys[..., :, None].expand(-1, -1, -1, offsets.numel()).reshape(n, p, -1).to(heatmaps.dtype)
    total = weights.sum(-1)
    return torch.stack([(weights * coords_x).sum(-1) / total, (weights * coords_y).sum(-1) / total], dim=-1)


class FANLandmarks(LandmarkDetector):
    """68-point landmarks from a FAN network (or a face-alignment TorchScript model).

    Generator images are mapped to ``[0, 1]`` and resized to 256², as face-alignment feeds its
    face crops (the images are taken to be face crops already: no detection); the last module's
    heat maps give the points by :func:`local_soft_argmax`, scaled to the images' pixel grid.

    Args:
        network: a :class:`FAN` (its last output is used) or any module returning the heat maps
            ``(N, 68, 64, 64)`` (or a list whose last element they are).
        input_size: side of the network input (256 for 2DFAN4).
        radius: soft-argmax window radius, in heat-map pixels.
    """

    num_points = 68
    groups = IBUG68_GROUPS

    def __init__(self, network: nn.Module, *, input_size: int = 256, radius: int = 3) -> None:
        super().__init__()
        self.network = network.eval()
        if isinstance(network, nn.Module) and not isinstance(network, torch.jit.ScriptModule):
            network.requires_grad_(False)
        self.input_size = input_size
        self.radius = radius

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: torch.device | str = "cpu") -> "FANLandmarks":
        """Load a ``2DFAN4`` ``.pth.tar`` state dict, or a face-alignment TorchScript ``.zip``.

        TorchScript archives are programs (run by the TorchScript interpreter); load only files
        you trust. State dicts are read with ``torch.load(weights_only=True)``.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointNotFoundError(f"no checkpoint file at {path}")
        if _is_torchscript(path):
            try:
                network = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:  # torch raises RuntimeError, ValueError … on damaged archives
                raise CorruptCheckpointError(f"{path}: damaged TorchScript archive ({describe_exception(exc)})") from exc
        else:
            state = load_state_dict_file(path)
            modules = sum(1 for k in state if k.startswith("l") and k[1:].split(".")[0].isdigit() and k.endswith("weight"))
            network = FAN(num_modules=max(modules, 1))
            load_state_strict(network, state, source=path)
        detector = cls(network).to(device)
        detector.source = {"fan": str(path.resolve())}
        return detector

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """The last module's heat maps ``(N, 68, S/4, S/4)`` for generator images."""
        images = self.check_images(images)
        x = resize_to_square((images + 1) / 2, self.input_size)
        out = self.network(x)
        out = out[-1] if isinstance(out, (list, tuple)) else out
        if out.ndim != 4 or out.shape[1] != self.num_points:
            raise ShapeError(f"the landmark network returned {tuple(out.shape)}, expected (N, {self.num_points}, h, w)")
        return out

    def landmarks(self, images: torch.Tensor) -> torch.Tensor:
        heatmaps = self.heatmaps(images)
        points = local_soft_argmax(heatmaps, self.radius)
        scale = torch.tensor([images.shape[-1] / heatmaps.shape[-1], images.shape[-2] / heatmaps.shape[-2]],
                             dtype=points.dtype, device=points.device)
        return (points + 0.5) * scale - 0.5


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())
