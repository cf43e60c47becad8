"""Any ``nn.Module`` that maps a latent tensor to images, as a :class:`Generator`."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError, ShapeError
from .base import Generator, NoiseMode, Seed

__all__ = ["ModuleGenerator"]


class ModuleGenerator(Generator):
    """Wrap a user generator module as a :class:`Generator` with the single space ``"z"``.

    Codes in ``"z"`` are flat vectors ``(N, D)``; they are reshaped to ``(N, *input_shape)``
    before the module is called (DCGAN generators, for example, take ``(N, 100, 1, 1)``). The
    module's output is rescaled from ``output_range`` to ``[-1, 1]``. ``z`` is sampled from a
    standard normal; ``truncation`` ψ scales it towards zero.

    The module is put in eval mode and called once on two zero codes to check that it returns
    square NCHW images.

    Args:
        module: maps ``(N, *input_shape)`` to ``(N, C, R, R)`` with C = 1 or 3.
        input_shape: the shape of one latent code as the module takes it, e.g. ``100`` or
            ``(100, 1, 1)``.
        output_range: the range of the module's output, e.g. ``(0, 1)`` for a sigmoid output.

    Example:
        >>> G = ModuleGenerator(dcgan, input_shape=(100, 1, 1))  # doctest: +SKIP
        >>> images = G.synthesize(G.sample(8, seed=0))  # doctest: +SKIP
    """

    spaces = ("z",)
    default_space = "z"

    def __init__(
        self,
        module: nn.Module,
        input_shape: int | tuple[int, ...],
        *,
        output_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.input_shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        low, high = (float(v) for v in output_range)
        if not high > low:
            raise InputError(f"output_range must be (low, high) with high > low, got {output_range}")
        self.output_range = (low, high)
        self.module = module.eval()
        with torch.no_grad():
            probe = self._run(torch.zeros(2, math.prod(self.input_shape), device=self.device, dtype=self.dtype))
        if probe.ndim != 4 or probe.shape[0] != 2 or probe.shape[1] not in (1, 3) or probe.shape[2] != probe.shape[3]:
            raise ShapeError(
                "the wrapped module must return square images (N, C, R, R) with C = 1 or 3; "
                f"for input {(2, *self.input_shape)} it returned {tuple(probe.shape)}"
            )
        self._resolution = int(probe.shape[-1])
        self.img_channels = int(probe.shape[1])

    @property
    def resolution(self) -> int:
        return self._resolution

    def latent_shape(self, space: str) -> tuple[int, ...]:
        self.check_space(space)
        return (math.prod(self.input_shape),)

    def convert(self, codes: torch.Tensor, src: str, dst: str, *, truncation: float = 1.0) -> torch.Tensor:
        """Only ``"z" → "z"``; ``truncation`` scales the codes by ψ."""
        self.check_conversion(src, dst, truncation)
        return codes if truncation == 1.0 else codes * truncation

    def _run(self, codes: torch.Tensor) -> torch.Tensor:
        out = self.module(codes.reshape(codes.shape[0], *self.input_shape))
        if not isinstance(out, torch.Tensor):
            raise InputError(f"the wrapped module must return a tensor, got {type(out).__name__}")
        low, high = self.output_range
        return out if (low, high) == (-1.0, 1.0) else (out - low) * (2.0 / (high - low)) - 1.0

    def generate(
        self,
        codes: torch.Tensor,
        space: str,
        noise_mode: NoiseMode,
        noise_seed: Seed | None,
        resolution: int | None,
    ) -> torch.Tensor:
        return self._run(codes)
