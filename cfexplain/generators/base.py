"""The generator protocol shared by every image generator cfexplain can explain with."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Literal, Union

import torch
from torch import nn

from ..errors import InputError, ShapeError

__all__ = ["Generator", "NoiseMode", "Seed", "make_rng", "standard_normal"]

NoiseMode = Literal["const", "random", "none"]
"""How per-layer noise is fed: the stored buffers, fresh Gaussian noise, or no noise at all."""

Seed = Union[int, torch.Generator]
"""A random seed, or a ready ``torch.Generator`` (on the CPU) to draw from."""

NOISE_MODES: tuple[str, ...] = ("const", "random", "none")


_NORMAL_BLOCK = 16
"""torch's CPU normal sampler fills whole blocks of 16 values alike whatever the tensor's size, but
draws a ragged tail (and any tensor of fewer than 16 values) differently."""

_CONVERT_BLOCK = 16

MAX_TRUNCATION = 2.0
"""The largest truncation ψ accepted (in absolute value): beyond it codes are extrapolated far
outside what the generator was trained on (ψ = 1e30 drew finite but meaningless images)."""
"""Sampled faces are converted out of ``z`` in the blocks ``[16 j, 16 j + 16)`` of the draw, whoever
draws them: a mapping network's output depends on its batch at rounding level, and with fixed
blocks a face's code is bit-identical in every prefix and every shard."""

_SKIP_CHUNK_BLOCKS = 1 << 16
"""Blocks drawn at a time when :func:`standard_normal` skips rows (bounds its memory); consecutive
draws of whole blocks continue one stream exactly."""


def standard_normal(n: int, shape: tuple[int, ...], seed: Seed, *, start: int = 0) -> torch.Tensor:
    """Rows ``start … start + n − 1`` of the standard-normal stream of ``seed`` (each row of shape
    ``shape``), prefix-stable: row ``i`` is the same whatever ``n`` and ``start``, so a shard of
    the rows can be drawn on its own. Whole 16-value blocks are drawn and cut to size, so the values
    are those of ``torch.randn`` wherever ``n · prod(shape)`` is a multiple of 16 (and ``start`` is 0).
    The rows before ``start`` are drawn and dropped, a bounded chunk at a time."""
    if start < 0:
        raise InputError(f"start must be ≥ 0, got {start}")
    row = math.prod(shape)
    rng = make_rng(seed)
    skip = start * row
    skipped_blocks = skip // _NORMAL_BLOCK
    while skipped_blocks:
        blocks = min(skipped_blocks, _SKIP_CHUNK_BLOCKS)
        torch.randn(blocks * _NORMAL_BLOCK, generator=rng)
        skipped_blocks -= blocks
    offset = skip - (skip // _NORMAL_BLOCK) * _NORMAL_BLOCK
    count = offset + n * row
    blocks = -(-max(count, 1) // _NORMAL_BLOCK)
    return torch.randn(blocks * _NORMAL_BLOCK, generator=rng)[offset:count].reshape(n, *shape)


def make_rng(seed: Seed) -> torch.Generator:
    """Return a CPU ``torch.Generator`` for ``seed`` (an int, or a generator passed through)."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    if not -(2 ** 63) <= seed < 2 ** 64:
        raise InputError(f"seed must lie in [-2**63, 2**64), got {seed}")
    return torch.Generator(device="cpu").manual_seed(seed)


class Generator(nn.Module, abc.ABC):
    """An image generator with named latent spaces.

    A generator maps latent codes to images, float32 NCHW in its raw output range (about
    ``[-1, 1]``). It has one or more latent *spaces*, ordered so that codes can be converted
    forward along the chain (for StyleGAN2: ``"z" → "w" → "w+" → "s"``). Every code tensor is
    batched: shape ``(N, *latent_shape(space))``.

    Subclasses implement :meth:`latent_shape`, :meth:`convert` and :meth:`generate`, and set
    :attr:`spaces` and :attr:`default_space`; sampling, validation, device handling and seeding
    live here once.

    Attributes:
        spaces: names of the latent spaces, in conversion order.
        default_space: the space :meth:`synthesize` reads when none is given.
        provenance: where the weights came from (file, sha256, format …), for reports.
    """

    spaces: tuple[str, ...] = ("z",)
    default_space: str = "z"
    face_framing: str = "template"
    """How photos are framed for this generator (:func:`cfexplain.photos.align_faces`):
    ``"template"`` (a template of the generator's own faces) or ``"ffhq"`` (FFHQ's recipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.provenance: dict[str, str] = {}
        """Where the weights came from (file, hash, format …), for reports."""

    @property
    @abc.abstractmethod
    def resolution(self) -> int:
        """Height and width of the generated images, in pixels."""

    @abc.abstractmethod
    def latent_shape(self, space: str) -> tuple[int, ...]:
        """Shape of one code in ``space`` (without the batch dimension)."""

    @abc.abstractmethod
    def convert(self, codes: torch.Tensor, src: str, dst: str, *, truncation: float = 1.0) -> torch.Tensor:
        """Convert ``codes`` from space ``src`` to a later space ``dst`` of the chain.

        Args:
            codes: ``(N, *latent_shape(src))``.
            src, dst: space names; ``dst`` must not come before ``src`` in :attr:`spaces`.
            truncation: ψ of the truncation trick, applied where the generator defines it
                (StyleGAN2: ``w_avg + ψ (w − w_avg)`` when passing through ``"w"``).
        """

    @abc.abstractmethod
    def generate(
        self,
        codes: torch.Tensor,
        space: str,
        noise_mode: NoiseMode,
        noise_seed: Seed | None,
        resolution: int | None,
    ) -> torch.Tensor:
        """Synthesis without validation: the extension point subclasses implement (and the
        Jacobian engine calls inside its transforms). ``codes`` are already checked and on the
        generator's device and dtype; :meth:`synthesize` validates and then calls this."""

    # ------------------------------------------------------------------ shared behaviour

    @property
    def device(self) -> torch.device:
        """The device of the generator's tensors (CPU for a generator without any)."""
        for tensor in self._tensors():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype of the generator's tensors (float32 by default)."""
        for tensor in self._tensors():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def latent_dim(self, space: str) -> int:
        """Number of scalars in one code of ``space`` (the product of :meth:`latent_shape`)."""
        return math.prod(self.latent_shape(space))

    def sample(
        self, n: int, *, space: str = "z", seed: Seed = 0, truncation: float = 1.0, start: int = 0
    ) -> torch.Tensor:
        """Draw ``n`` codes in ``space``: faces ``start … start + n − 1`` of ``seed``.

        ``z`` is drawn from a standard normal with ``seed`` (on the CPU, so a seed gives the same
        codes on every device) by :func:`standard_normal`, which is prefix-stable: face ``i``
        depends only on the seed and ``i``, so ``sample(n, seed=s)[a:b]`` equals
        ``sample(b - a, seed=s, start=a)``, the way a process draws its shard of an audit's faces.
        Other spaces convert the draw in fixed blocks of 16 faces, so that equality is exact
        there too (with an int seed; a ``torch.Generator`` is drawn from and converted as it stands).

        Args:
            n: number of codes, ≥ 1.
            space: one of :attr:`spaces`.
            seed: an int or a CPU ``torch.Generator`` (drawn from as it stands).
            truncation: ψ of the truncation trick (see :meth:`convert`); 1.0 leaves codes as drawn.
            start: the index of the first face drawn, ≥ 0.

        Returns:
            ``(n, *latent_shape(space))`` on the generator's device and dtype.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n must be a positive int, got {n!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InputError(f"start must be an int ≥ 0, got {start!r}")
        self.check_space(space)
        blocked = space != "z" and not isinstance(seed, torch.Generator)  # converted in whole blocks
        first = start - start % _CONVERT_BLOCK if blocked else start
        last = -(-(start + n) // _CONVERT_BLOCK) * _CONVERT_BLOCK if blocked else start + n
        z = standard_normal(last - first, self.latent_shape("z"), seed, start=first)
        z = z.to(device=self.device, dtype=self.dtype)
        with torch.no_grad():
            blocks = z.split(_CONVERT_BLOCK) if blocked else (z,)
            codes = torch.cat([self.convert(block, "z", space, truncation=truncation) for block in blocks])
        return codes[start - first:start - first + n]

    def edit_scale(self, space: str, directions: torch.Tensor, *, n_samples: int = 2000, seed: Seed = 7919) -> torch.Tensor:
        """σ ``(k,)``: the unit in which edits along ``directions`` are measured.

        By default the standard deviation of ``n_samples`` sampled codes along each direction (a
        column of ``directions``, ``(D, k)`` in the flattened space): an edit of one σ moves a code
        as far as faces differ from each other along it. Generators whose spaces have coordinates
        that sampled codes do not vary (such as :class:`ChannelStyleGenerator`'s styles) add their
        own unit for those.
        """
        self.check_space(space)
        if directions.ndim != 2 or directions.shape[0] != self.latent_dim(space):
            raise ShapeError(f"directions for space {space!r} must be (D, k) with D = {self.latent_dim(space)}, "
                             f"got {tuple(directions.shape)}")
        with torch.no_grad():
            codes = self.sample(n_samples, space=space, seed=seed)
            projected = codes.reshape(codes.shape[0], -1).double().cpu() @ directions.detach().double().cpu()
        return projected.std(dim=0).float()

    @property
    def discovery_space(self) -> str:
        """The space unsupervised directions are found in by default (:mod:`cfexplain.discovery`):
        ``"w"`` where the generator has a mapping network's ``w``, else ``"z"``."""
        return "w" if "w" in self.spaces else "z"

    def inversion_space(self, space: str) -> str:
        """The space photos are inverted in for codes of ``space`` (:func:`cfexplain.invert`); the
        codes are converted to ``space`` afterwards. Default: ``space`` itself."""
        return space

    def noise_maps(self) -> list[torch.Tensor]:
        """The constant maps ``(r, r)`` of the generator's noise inputs, in the order
        :meth:`synthesize`'s ``noise`` takes them (empty for generators without noise inputs)."""
        return []

    def style_weights(self) -> dict[str, torch.Tensor]:
        """Per style layer (the names of its style layout), the weight ``(channels, w_dim)`` of the
        affine that makes the layer's style from ``w``: what SeFa factorises. Generators without
        style affines raise :class:`~cfexplain.errors.InputError`."""
        raise InputError(f"{type(self).__name__} has no style affines (SeFa factorises those of a StyleGAN2 generator)")

    def synthesize(
        self,
        codes: torch.Tensor,
        *,
        space: str | None = None,
        noise_mode: NoiseMode = "const",
        noise_seed: Seed | None = None,
        resolution: int | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Generate images from codes.

        Args:
            codes: ``(N, *latent_shape(space))``; moved to the generator's device and dtype.
            space: the space of ``codes``; defaults to :attr:`default_space`.
            noise_mode: ``"const"`` (stored noise buffers; deterministic), ``"random"`` (fresh
                Gaussian noise drawn with ``noise_seed``) or ``"none"``. Generators without noise
                inputs ignore it.
            noise_seed: seed for ``noise_mode="random"``; ``None`` draws from torch's global RNG.
            resolution: stop synthesis early and return the image at this (power of two)
                resolution, where the generator supports it; ``None`` for full resolution.
            noise: per-image noise maps ``(N, 1, r, r)``, one per noise input (:meth:`noise_maps`),
                used instead of ``noise_mode``'s (photo inversion optimises them).

        Returns:
            Images ``(N, C, R, R)`` in the generator's raw range (about ``[-1, 1]``), differentiable
            with respect to ``codes``.
        """
        if space is None:
            space = self.default_space
            self._check_default_space(codes)
        codes = self.check_codes(codes, space)
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if resolution is not None:
            self.check_resolution(resolution)
        if noise is None:
            return self.generate(codes, space, noise_mode, noise_seed, resolution)
        inputs = len(self.noise_maps())
        if len(noise) != inputs or not inputs:
            raise InputError(f"noise: {len(noise)} maps given, the generator has {inputs} noise inputs")
        return self.generate(codes, space, noise_mode, noise_seed, resolution, noise=noise)

    def check_space(self, space: str) -> None:
        """Raise :class:`~cfexplain.errors.InputError` unless ``space`` is one of :attr:`spaces`."""
        if space not in self.spaces:
            raise InputError(
                f"unknown latent space {space!r} for {type(self).__name__}; it has {list(self.spaces)}"
            )

    def check_codes(self, codes: torch.Tensor, space: str) -> torch.Tensor:
        """Validate a batch of codes for ``space`` and move it to the generator's device and dtype.

        Raises:
            InputError: unknown space, not a floating-point tensor, or NaN/inf values.
            ShapeError: the shape is not ``(N, *latent_shape(space))``.
        """
        self.check_space(space)
        if not isinstance(codes, torch.Tensor):
            raise InputError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
        expected = self.latent_shape(space)
        if codes.ndim >= 1 and codes.shape[0] == 0:
            raise InputError(f"codes for space {space!r} are an empty batch; give at least one face")
        if codes.ndim != len(expected) + 1 or tuple(codes.shape[1:]) != expected:
            raise ShapeError(
                f"codes for space {space!r} must have shape (N, {', '.join(map(str, expected))}), "
                f"got {tuple(codes.shape)}"
            )
        if not codes.is_floating_point():
            raise InputError(f"codes must be a floating-point tensor, got dtype {codes.dtype}")
        if not bool(torch.isfinite(codes).all()):
            raise InputError(f"codes for space {space!r} contain NaN or infinite values")
        return codes.to(device=self.device, dtype=self.dtype)

    def _check_default_space(self, codes: object) -> None:
        """For :meth:`synthesize` without ``space``: codes that do not fit :attr:`default_space`
        get an error that names the spaces they do fit and what to pass (:meth:`sample` draws in
        ``"z"`` unless told otherwise, and some generators synthesize from another space by default)."""
        if not isinstance(codes, torch.Tensor) or tuple(codes.shape[1:]) == self.latent_shape(self.default_space):
            return
        fitting = [s for s in self.spaces if tuple(codes.shape[1:]) == self.latent_shape(s)]
        if fitting:
            raise ShapeError(
                f"synthesize() reads codes of space {self.default_space!r} (N, "
                f"{', '.join(map(str, self.latent_shape(self.default_space)))}) unless told otherwise; these have "
                f"shape {tuple(codes.shape)}, the shape of space {' or '.join(map(repr, fitting))}: pass "
                f"space={fitting[0]!r} (sample() draws in 'z' unless given space=...)"
            )

    def check_resolution(self, resolution: int) -> None:
        """Raise :class:`~cfexplain.errors.InputError` unless synthesis can stop at ``resolution``
        (by default only the full resolution; StyleGAN2 allows every block resolution)."""
        if resolution != self.resolution:
            raise InputError(
                f"{type(self).__name__} only synthesizes at its full resolution {self.resolution}, "
                f"got resolution={resolution}"
            )

    def check_conversion(self, src: str, dst: str, truncation: float = 1.0) -> None:
        """Raise :class:`~cfexplain.errors.InputError` unless codes can be converted from ``src`` to
        ``dst`` (both known, ``dst`` not before ``src`` in :attr:`spaces`) with ``truncation`` ψ (a
        finite number within ±:data:`MAX_TRUNCATION`)."""
        if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not math.isfinite(truncation) \
                or abs(truncation) > MAX_TRUNCATION:
            raise InputError(f"truncation must be a finite number within ±{MAX_TRUNCATION:g} (ψ: 1 leaves codes as "
                             f"drawn, 0.5–0.7 is usual), got {truncation!r}")
        self.check_space(src)
        self.check_space(dst)
        if self.spaces.index(dst) < self.spaces.index(src):
            raise InputError(
                f"cannot convert codes from {src!r} back to {dst!r}: conversions run forward along "
                f"{' → '.join(self.spaces)}"
            )

    def check_statistics(self) -> None:
        """Raise ``ValueError`` naming a stored statistic (an average latent, a noise strength …)
        that lies outside the range a trained network has. The loaders call it on every checkpoint;
        by default there is nothing to check."""

    def _tensors(self):
        yield from self.parameters()
        yield from self.buffers()
