"""Channel styles: a localised latent space for any convolutional generator (the StyleSpace analogue).

StyleGAN2's StyleSpace works for interpretable editing because each coordinate scales one
channel of one layer, and many channels are spatially and semantically localised (one moves the
lips, another the eyes). The same units exist in any convolutional generator: GAN Dissection
(Bau et al., 2019) finds them in plain DCGAN/PGGAN layers. :class:`ChannelStyleGenerator` makes them
a latent space of their own:

* ``"z"``: the wrapped module's input, as in :class:`~cfexplain.generators.ModuleGenerator`;
* ``"s"``: ``z`` followed by one *style* per live channel of each chosen layer. Style ``g`` of
  channel ``c`` multiplies that channel's activations by ``exp(κ_c · g)``; ``κ_c`` is the spread
  (standard deviation over faces) of the channel's log mean magnitude, so one unit of style
  changes the channel by as much as it varies from face to face. Sampled faces have every style at
  0, and ``convert(z, "z", "s")`` appends zeros.

A gain acts only where its channel fires, which keeps a channel's edit where the channel's feature
is; an additive offset would switch the channel on everywhere. Channels that are silent on most
calibration faces are left out (their gain would change nothing).

Edit budgets are measured in standard deviations (:meth:`Generator.edit_scale`): for ``z`` the
spread of sampled codes, for the styles one unit each.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError, ShapeError
from .base import NoiseMode, Seed, make_rng
from .wrapped import ModuleGenerator

__all__ = ["ChannelStyleGenerator", "ChannelStyleLayer", "ChannelStyleLayout"]


@dataclass(frozen=True)
class ChannelStyleLayer:
    """The styles of one layer.

    Attributes:
        name: the layer's module name in the wrapped network (e.g. ``"3"``).
        channels: the module channels that have a style, in order.
        offset: position of the layer's first style in the flat ``s`` code (after ``z``).
        scales: ``κ`` per style: the log-gain of one unit.
    """

    name: str
    channels: tuple[int, ...]
    offset: int
    scales: tuple[float, ...] = field(repr=False)

    @property
    def size(self) -> int:
        """Number of styles of the layer."""
        return len(self.channels)

    @property
    def slice(self) -> slice:
        """The layer's styles in the flat ``s`` code."""
        return slice(self.offset, self.offset + self.size)


@dataclass(frozen=True)
class ChannelStyleLayout(Sequence[ChannelStyleLayer]):
    """Where each layer's styles lie in ``s``: ``z`` first (``z_dim`` values), then the layers."""

    z_dim: int
    layers: tuple[ChannelStyleLayer, ...]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[ChannelStyleLayer]:
        return iter(self.layers)

    def __getitem__(self, key):  # type: ignore[override]
        """A layer by position or by module name."""
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise InputError(f"no styled layer named {key!r}; layers are {[layer.name for layer in self.layers]}")
        return self.layers[key]

    @property
    def styles(self) -> int:
        """Number of styles (all layers)."""
        return sum(layer.size for layer in self.layers)

    @property
    def total(self) -> int:
        """Length of a flat ``s`` code: ``z_dim`` + every style."""
        return self.z_dim + self.styles

    def index(self, layer: int | str, channel: int) -> int:
        """The flat ``s`` index of module channel ``channel`` of ``layer`` (position or name)."""
        entry = self[layer]
        if channel not in entry.channels:
            raise InputError(f"channel {channel} of layer {entry.name!r} has no style (silent on the calibration "
                             f"faces, or beyond the layer's channels)")
        return entry.offset + entry.channels.index(channel)


class ChannelStyleGenerator(ModuleGenerator):
    """A wrapped convolutional generator with the localised latent space ``"s"`` of channel styles.

    Args:
        module: maps ``(N, *input_shape)`` latents to ``(N, C, R, R)`` images.
        input_shape: one latent code's shape as the module takes it (e.g. ``(100, 1, 1)``).
        layers: names (``module.named_modules()``) of the layers whose output channels get styles;
            each must output ``(N, C, H, W)`` feature maps. Post-activation layers (the ReLUs)
            are the natural choice: their channels are the network's units.
        output_range: the module's output range (see :class:`ModuleGenerator`).
        calibration_samples: faces drawn (``calibration_seed``) to measure each channel's spread
            ``κ`` and to find the silent channels.
        calibration_seed: seed of those faces.
        silent_fraction: a channel is left out when its mean magnitude is below 1e-6 of the
            layer's typical channel on more than this fraction of the calibration faces.

    Example:
        >>> G = ChannelStyleGenerator(dcgan, (100, 1, 1), layers=["1", "3", "5", "7"])  # doctest: +SKIP
        >>> s = G.convert(G.sample(4, seed=0), "z", "s")        # styles 0: the same faces  # doctest: +SKIP
        >>> s[:, G.style_layout.index("5", 17)] += 2.0          # boost one unit by 2 σ     # doctest: +SKIP
        >>> images = G.synthesize(s, space="s")                  # doctest: +SKIP
    """

    spaces = ("z", "s")
    default_space = "z"

    def __init__(self, module: nn.Module, input_shape: int | tuple[int, ...], *, layers: Sequence[str],
                 output_range: tuple[float, float] = (-1.0, 1.0), calibration_samples: int = 512,
                 calibration_seed: int = 0, silent_fraction: float = 0.5) -> None:
        super().__init__(module, input_shape, output_range=output_range)
        names = list(layers)
        if not names:
            raise InputError("layers must name at least one layer of the module")
        if isinstance(calibration_samples, bool) or not isinstance(calibration_samples, int) or calibration_samples < 2:
            raise InputError(f"calibration_samples must be an int ≥ 2, got {calibration_samples!r}")
        modules = dict(self.module.named_modules())
        unknown = [name for name in names if name not in modules or name == ""]
        if unknown:
            raise InputError(f"the module has no layers named {unknown}; its layers are "
                             f"{[n for n in modules if n][:40]}")
        if len(set(names)) != len(names):
            raise InputError(f"layers must be distinct, got {names}")
        self._layer_modules = [modules[name] for name in names]
        magnitudes = self._calibrate(names, calibration_samples, calibration_seed)
        entries, offset = [], math.prod(self.input_shape)
        for name, magnitude in zip(names, magnitudes):
            channels, scales = _styled_channels(magnitude, silent_fraction)
            entries.append(ChannelStyleLayer(name, tuple(channels), offset, tuple(scales)))
            offset += len(channels)
        self.style_layout = ChannelStyleLayout(math.prod(self.input_shape), tuple(entries))
        for i, entry in enumerate(entries):
            self.register_buffer(f"_channels_{i}", torch.tensor(entry.channels, dtype=torch.long), persistent=False)
            self.register_buffer(f"_scales_{i}", torch.tensor(entry.scales, dtype=self.dtype), persistent=False)

    def _calibrate(self, names: list[str], samples: int, seed: int) -> list[torch.Tensor]:
        """Per layer, ``(samples, C)`` mean magnitude of each output channel over the calibration faces."""
        found: dict[int, list[torch.Tensor]] = {}

        def record(i: int):
            def hook(_module, _inputs, output):
                if not isinstance(output, torch.Tensor) or output.ndim != 4:
                    raise ShapeError(f"layer {names[i]!r} must output (N, C, H, W) feature maps to carry channel "
                                     f"styles, got {type(output).__name__}"
                                     f"{tuple(output.shape) if isinstance(output, torch.Tensor) else ''}")
                found.setdefault(i, []).append(output.detach().abs().mean(dim=(2, 3)).double().cpu())
            return hook

        handles = [m.register_forward_hook(record(i)) for i, m in enumerate(self._layer_modules)]
        try:
            z = torch.randn((samples, math.prod(self.input_shape)), generator=make_rng(seed))
            with torch.no_grad():
                for part in z.split(256):
                    self._run(part.to(device=self.device, dtype=self.dtype))
        finally:
            for handle in handles:
                handle.remove()
        return [torch.cat(found[i]) for i in range(len(names))]

    # ------------------------------------------------------------------ the protocol

    def latent_shape(self, space: str) -> tuple[int, ...]:
        self.check_space(space)
        return (self.style_layout.z_dim,) if space == "z" else (self.style_layout.total,)

    def convert(self, codes: torch.Tensor, src: str, dst: str, *, truncation: float = 1.0) -> torch.Tensor:
        """``"z" → "s"`` appends zero styles (the same faces); ``truncation`` ψ scales the ``z`` part."""
        self.check_conversion(src, dst, truncation)
        z_dim = self.style_layout.z_dim
        if truncation != 1.0:
            codes = torch.cat([codes[:, :z_dim] * truncation, codes[:, z_dim:]], dim=1)
        if src == dst:
            return codes
        return torch.cat([codes, codes.new_zeros(codes.shape[0], self.style_layout.styles)], dim=1)

    def edit_scale(self, space: str, directions: torch.Tensor, *, n_samples: int = 2000, seed: Seed = 7919) -> torch.Tensor:
        """σ per direction: in ``"s"`` the ``z`` part's sampled spread combined with one unit per style
        (``σ² = var(z · v_z) + ‖v_styles‖²``)."""
        spread = super().edit_scale(space, directions, n_samples=n_samples, seed=seed)
        if space != "s":
            return spread
        styles = directions.reshape(directions.shape[0], -1)[self.style_layout.z_dim:]
        return (spread.square() + styles.double().square().sum(dim=0).to(spread)).sqrt()

    def generate(self, codes: torch.Tensor, space: str, noise_mode: NoiseMode, noise_seed: Seed | None,
                    resolution: int | None) -> torch.Tensor:
        if space == "z":
            return self._run(codes)
        z_dim = self.style_layout.z_dim
        styles = codes[:, z_dim:].split([layer.size for layer in self.style_layout], dim=1)
        with self._styled(styles):
            return self._run(codes[:, :z_dim])

    @contextlib.contextmanager
    def _styled(self, styles: Sequence[torch.Tensor]) -> Iterator[None]:
        """Within the block, each styled layer's output channels are multiplied by ``exp(κ · style)``."""
        def gain(i: int, style: torch.Tensor):
            channels, scales = getattr(self, f"_channels_{i}"), getattr(self, f"_scales_{i}")

            def hook(_module, _inputs, output):
                factor = torch.ones(output.shape[0], output.shape[1], dtype=output.dtype, device=output.device)
                factor = factor.index_copy(1, channels, (style * scales).exp())
                return output * factor[:, :, None, None]
            return hook

        handles = [m.register_forward_hook(gain(i, s)) for i, (m, s) in enumerate(zip(self._layer_modules, styles))]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _styled_channels(magnitude: torch.Tensor, silent_fraction: float) -> tuple[list[int], list[float]]:
    """The channels that fire on most calibration faces, and ``κ`` (std of log magnitude) of each."""
    typical = magnitude.median().clamp_min(1e-30)
    firing = (magnitude > 1e-6 * typical).double().mean(dim=0) > 1 - silent_fraction
    logs = magnitude.clamp_min(1e-6 * float(typical)).log()
    spread = logs.std(dim=0)
    live = firing & torch.isfinite(spread) & (spread > 0)
    channels = live.nonzero()[:, 0].tolist()
    return channels, [float(spread[c]) for c in channels]
