"""StyleGAN3 ("Alias-Free Generative Adversarial Networks", Karras et al. 2021) in plain PyTorch.

The synthesis network starts from Fourier features, rotated and translated by the first W+ slot,
and runs ``num_layers + 1`` alias-free layers. Each layer:

1. modulated convolution (weights demodulated, the input scaled by its ``magnitude_ema``);
2. filtered leaky ReLU: bias; up-sampling by zero insertion and the stored FIR low-pass (gain
   ``up²``), cropped or padded by the layer's padding; leaky ReLU with gain √2 and clamp; the
   stored down-sampling low-pass (radial, non-separable, for R's non-critical layers); decimation.

The last layer is a ToRGB (1×1, no demodulation, no activation). Separable filters run as two 1-D
passes. The layer plan (sizes, sampling rates, cutoffs, filters' factors and paddings) follows the
paper's schedule from the constructor's settings (:func:`layer_plan`); loaded checkpoints carry
their filters, and :func:`lowpass_filter` designs them for random weights.

Spaces: ``z → w → w+ → s``. ``w+`` has ``num_layers + 2`` slots: slot 0 feeds the input's
transform, slot ``i + 1`` layer ``i``. ``s`` is every affine's output, in layer order, **the input
stage's 4 numbers included**. They are geometric (a rotation, normalised, and a translation, not
channel styles), but without them ``s`` would not determine the image. Learning and search can
leave them out by layer (``style_layout["input"]``). StyleGAN3 has no intermediate RGB outputs, so
early exit (``resolution=``) is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .base import NoiseMode, Seed, make_rng
from .stylegan2 import EqualizedLinear, MappedStyleGenerator, MappingNetwork, StyleLayer, StyleLayout

__all__ = ["StyleGAN3Config", "LayerPlan", "layer_plan", "lowpass_filter", "StyleGAN3Generator"]

LRELU_SLOPE, LRELU_GAIN = 0.2, math.sqrt(2)


@dataclass(frozen=True)
class StyleGAN3Config:
    """A StyleGAN3 generator's settings (the NVlabs constructor's, with its defaults).

    ``t`` configurations use 3×3 convolutions and separable filters, ``r`` configurations 1×1
    convolutions and radial down-sampling filters (``use_radial_filters``).
    """

    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0

    def __post_init__(self) -> None:
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise InputError(f"resolution must be a power of two ≥ 4, got {self.resolution}")
        if self.num_critical >= self.num_layers:
            raise InputError(f"num_critical ({self.num_critical}) must be below num_layers ({self.num_layers})")

    @property
    def num_ws(self) -> int:
        """W+ slots: one for the input stage and one per layer."""
        return self.num_layers + 2

    @property
    def mapping_features(self) -> int:
        """The mapping network's hidden width: ``w_dim`` (what :class:`MappingNetwork` reads)."""
        return self.w_dim

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> "StyleGAN3Config":
        """The config of NVlabs constructor kwargs (``_init_kwargs`` of a pickle's ``Generator``)."""
        mapping = dict(kwargs.get("mapping_kwargs") or {})
        names = {f.name for f in cls.__dataclass_fields__.values()}
        given = {k: v for k, v in kwargs.items() if k in names}
        given.update(resolution=int(kwargs.get("img_resolution", cls.resolution)))
        if "num_layers" in mapping:
            given["mapping_layers"] = int(mapping["num_layers"])
        if "lr_multiplier" in mapping:
            given["mapping_lr_multiplier"] = float(mapping["lr_multiplier"])
        return cls(**given)


@dataclass(frozen=True)
class LayerPlan:
    """One synthesis layer's geometry (``name`` as NVlabs names it: ``L{i}_{size}_{channels}``)."""

    name: str
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: float
    out_sampling_rate: float
    tmp_sampling_rate: float
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    up_taps: int
    down_factor: int
    down_taps: int
    down_radial: bool
    is_torgb: bool
    padding: tuple[int, int, int, int] = field(default=(0, 0, 0, 0))


def _schedule(config: StyleGAN3Config) -> dict[str, np.ndarray]:
    """The paper's per-layer cutoffs, stopbands, sampling rates, half widths, sizes and channels."""
    c = config
    last_cutoff = c.resolution / 2
    last_stopband = last_cutoff * c.last_stopband_rel
    exponents = np.minimum(np.arange(c.num_layers + 1) / (c.num_layers - c.num_critical), 1)
    cutoffs = c.first_cutoff * (last_cutoff / c.first_cutoff) ** exponents
    stopbands = c.first_stopband * (last_stopband / c.first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, c.resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + c.margin_size * 2
    sizes[-2:] = c.resolution
    channels = np.rint(np.minimum((c.channel_base / 2) / cutoffs, c.channel_max))
    channels[-1] = c.img_channels
    return {"cutoffs": cutoffs, "sampling_rates": sampling_rates, "half_widths": half_widths,
            "sizes": sizes.astype(int), "channels": channels.astype(int)}


def layer_plan(config: StyleGAN3Config) -> tuple[dict[str, float | int], list[LayerPlan]]:
    """The input stage (``channels``, ``size``, ``sampling_rate``, ``bandwidth``) and every layer's
    :class:`LayerPlan`, from the paper's schedule."""
    s = _schedule(config)
    cutoffs, rates, half_widths, sizes, channels = (s[k] for k in ("cutoffs", "sampling_rates", "half_widths",
                                                                    "sizes", "channels"))
    plans = []
    for i in range(config.num_layers + 1):
        prev = max(i - 1, 0)
        is_torgb = i == config.num_layers
        critical = i >= config.num_layers - config.num_critical
        tmp_rate = max(rates[prev], rates[i]) * (1 if is_torgb else config.lrelu_upsampling)
        up = int(np.rint(tmp_rate / rates[prev]))
        down = int(np.rint(tmp_rate / rates[i]))
        up_taps = config.filter_size * up if up > 1 and not is_torgb else 1
        down_taps = config.filter_size * down if down > 1 and not is_torgb else 1
        kernel = 1 if is_torgb else config.conv_kernel
        total = (sizes[i] - 1) * down + 1 - (sizes[prev] + kernel - 1) * up + up_taps + down_taps - 2
        low = (total + up) // 2
        plans.append(LayerPlan(
            name=f"L{i}_{sizes[i]}_{channels[i]}", in_channels=int(channels[prev]), out_channels=int(channels[i]),
            in_size=int(sizes[prev]), out_size=int(sizes[i]), in_sampling_rate=float(rates[prev]),
            out_sampling_rate=float(rates[i]), tmp_sampling_rate=float(tmp_rate), in_cutoff=float(cutoffs[prev]),
            out_cutoff=float(cutoffs[i]), in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[i]),
            conv_kernel=kernel, up_factor=up, up_taps=up_taps, down_factor=down, down_taps=down_taps,
            down_radial=config.use_radial_filters and not critical, is_torgb=is_torgb,
            padding=(int(low), int(total - low), int(low), int(total - low))))
    stage = {"channels": int(channels[0]), "size": int(sizes[0]), "sampling_rate": float(rates[0]),
             "bandwidth": float(cutoffs[0])}
    return stage, plans


def lowpass_filter(taps: int, cutoff: float, width: float, rate: float, *, radial: bool = False) -> torch.Tensor | None:
    """A Kaiser-windowed low-pass FIR filter (``None`` for a single tap): separable 1-D taps
    (``scipy.signal.firwin``), or a radial 2-D jinc filter, normalised to sum 1."""
    if taps == 1:
        return None
    import scipy.signal
    import scipy.special

    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=taps, cutoff=cutoff, width=width, fs=rate), dtype=torch.float32)
    x = (np.arange(taps) - (taps - 1) / 2) / rate
    r = np.hypot(*np.meshgrid(x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        jinc = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    jinc = np.where(r == 0, cutoff, jinc)  # the limit at the centre
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(taps, width / (rate / 2)))
    window = np.kaiser(taps, beta)
    kernel = jinc * np.outer(window, window)
    return torch.as_tensor(kernel / kernel.sum(), dtype=torch.float32)


# --------------------------------------------------------------------------- filtering


def _crop_or_pad(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """Pad ``dim`` with zeros (positive amounts) or crop it (negative amounts)."""
    if before > 0 or after > 0:
        pads = [0, 0] * (x.ndim - 1 - dim) + [max(before, 0), max(after, 0)]
        x = F.pad(x, pads)
    if before < 0 or after < 0:
        x = x.narrow(dim, max(-before, 0), x.shape[dim] - max(-before, 0) - max(-after, 0))
    return x


def _zero_insert(x: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Up-sample ``dim`` by ``factor``: each sample followed by ``factor − 1`` zeros."""
    if factor == 1:
        return x
    shape = list(x.shape)
    x = F.pad(x.unsqueeze(dim + 1), [0, 0] * (x.ndim - 1 - dim) + [0, factor - 1])
    shape[dim] *= factor
    return x.reshape(shape)


def _depthwise(taps: torch.Tensor, dim: int, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """``taps`` as a depthwise kernel along spatial ``dim`` (2: rows, 3: columns)."""
    kernel = taps.to(dtype).reshape(1, 1, -1, 1) if dim == 2 else taps.to(dtype).reshape(1, 1, 1, -1)
    return kernel.expand(channels, 1, *kernel.shape[2:])


def _stride(dim: int, factor: int) -> tuple[int, int]:
    return (factor, 1) if dim == 2 else (1, factor)


def _upsample_1d(x: torch.Tensor, taps: torch.Tensor, dim: int, up: int, before: int, after: int) -> torch.Tensor:
    """Zero insertion by ``up``, padding (``before``, ``after``; negative crops) and convolution
    with ``taps`` along ``dim``, as one transposed convolution: the zeros are never multiplied."""
    length, size = taps.shape[0], x.shape[dim]
    full = F.conv_transpose2d(x, _depthwise(taps, dim, x.shape[1], x.dtype), stride=_stride(dim, up),
                              groups=x.shape[1])  # the full convolution of the zero-inserted signal
    start = length - 1 - before  # the 'valid' window of the padded signal, in the full convolution
    count = size * up + before + after - length + 1
    return _crop_or_pad(full, dim, -start, start + count - full.shape[dim])


def _downsample_1d(x: torch.Tensor, taps: torch.Tensor, dim: int, down: int) -> torch.Tensor:
    """Convolution with ``taps`` along ``dim`` ('valid'), keeping every ``down``-th output only."""
    return F.conv2d(x, _depthwise(taps.flip(0), dim, x.shape[1], x.dtype), stride=_stride(dim, down),
                    groups=x.shape[1])


def upfirdn(x: torch.Tensor, taps: torch.Tensor | None, *, up: int = 1, down: int = 1,
            padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Up-sample by zero insertion, pad or crop by ``padding`` (left, right, top, bottom), filter
    (separable 1-D ``taps`` on both axes, or a 2-D kernel), scale by ``gain``, decimate. Separable
    filters run as strided 1-D passes (transposed for up-sampling), so that neither the inserted
    zeros nor the dropped outputs cost multiplications."""
    left, right, top, bottom = padding
    if taps is None:
        x = _crop_or_pad(_crop_or_pad(_zero_insert(_zero_insert(x, 2, up), 3, up), 3, left, right), 2, top, bottom)
        return (x * gain if gain != 1 else x)[:, :, ::down, ::down]
    if taps.ndim == 1:
        taps = taps * math.sqrt(gain)
        for dim, (before, after) in ((3, (left, right)), (2, (top, bottom))):
            if up > 1:
                x = _upsample_1d(x, taps, dim, up, before, after)
                if down > 1:
                    x = x[:, :, ::down] if dim == 2 else x[:, :, :, ::down]
            else:
                x = _downsample_1d(_crop_or_pad(x, dim, before, after), taps, dim, down)
        return x
    x = _zero_insert(_zero_insert(x, 2, up), 3, up)
    x = _crop_or_pad(_crop_or_pad(x, 3, left, right), 2, top, bottom)
    kernel = (taps.flip([0, 1]) * gain).to(x.dtype)
    return F.conv2d(x, kernel[None, None].expand(x.shape[1], 1, *kernel.shape), stride=down, groups=x.shape[1])


# --------------------------------------------------------------------------- the network


class FourierInput(nn.Module):
    """The input stage: Fourier features of a grid, rotated and translated by ``w``'s affine
    ``(cos-like, sin-like, tx, ty)`` (the first two normalised to a rotation), composed with the
    user ``transform`` (a 3×3 matrix, identity by default), then mixed by a learned matrix."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float,
                 rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.channels, self.size, self.sampling_rate, self.bandwidth = channels, size, sampling_rate, bandwidth
        self.affine = EqualizedLinear(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        angles = torch.rand(channels, generator=rng) * (2 * math.pi)
        radii = torch.rand(channels, generator=rng).sqrt() * bandwidth  # uniform in the band's disc
        self.register_buffer("freqs", torch.stack([angles.cos(), angles.sin()], dim=1) * radii[:, None])
        self.register_buffer("phases", torch.rand(channels, generator=rng) - 0.5)
        self.register_buffer("transform", torch.eye(3))
        self.weight = nn.Parameter(torch.randn(channels, channels, generator=rng))

    def forward(self, styles: torch.Tensor) -> torch.Tensor:
        """Features ``(N, channels, size, size)`` from the stage's styles ``(N, 4)``."""
        n = styles.shape[0]
        t = styles / styles[:, :2].norm(dim=1, keepdim=True)
        rotation = torch.eye(3, dtype=t.dtype, device=t.device).repeat(n, 1, 1)
        rotation[:, 0, 0], rotation[:, 0, 1], rotation[:, 1, 0], rotation[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        translation = torch.eye(3, dtype=t.dtype, device=t.device).repeat(n, 1, 1)
        translation[:, 0, 2], translation[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = rotation @ translation @ self.transform.to(t.dtype)[None]
        freqs = self.freqs[None].to(t.dtype) @ transforms[:, :2, :2]  # (N, C, 2)
        phases = self.phases[None].to(t.dtype) + (self.freqs[None].to(t.dtype) @ transforms[:, :2, 2:]).squeeze(2)
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        half = 0.5 * self.size / self.sampling_rate  # the grid spans the size in units of the sampling period
        theta = torch.tensor([[half, 0.0, 0.0], [0.0, half, 0.0]], dtype=t.dtype, device=t.device)
        grid = F.affine_grid(theta[None], [1, 1, self.size, self.size], align_corners=False)  # (1, H, W, 2)
        x = torch.einsum("hwk,nck->nhwc", grid[0], freqs) + phases[:, None, None, :]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t().to(x.dtype)
        return x.permute(0, 3, 1, 2)


class AliasFreeLayer(nn.Module):
    """One synthesis layer: modulated convolution, then the filtered leaky ReLU (module docstring)."""

    def __init__(self, plan: LayerPlan, w_dim: int, conv_clamp: float | None,
                 rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.plan, self.conv_clamp = plan, conv_clamp
        self.affine = EqualizedLinear(w_dim, plan.in_channels, bias_init=1.0, rng=rng)
        k = plan.conv_kernel
        self.weight = nn.Parameter(torch.randn(plan.out_channels, plan.in_channels, k, k, generator=rng))
        self.bias = nn.Parameter(torch.zeros(plan.out_channels))
        self.register_buffer("magnitude_ema", torch.ones(()))
        up = lowpass_filter(plan.up_taps, plan.in_cutoff, plan.in_half_width * 2, plan.tmp_sampling_rate)
        down = lowpass_filter(plan.down_taps, plan.out_cutoff, plan.out_half_width * 2, plan.tmp_sampling_rate,
                              radial=plan.down_radial)
        self.register_buffer("up_filter", up)
        self.register_buffer("down_filter", down)

    def forward(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        plan, weight = self.plan, self.weight.to(x.dtype)
        if plan.is_torgb:
            styles = styles / math.sqrt(weight[0].numel())
        else:  # pre-normalised for range; demodulation cancels any per-image scale of the styles
            weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
        # the styles scale the input channels and demodulation the output channels of one convolution
        # shared by the batch (the same as convolving with per-image modulated weights): no
        # per-image weights, and each image's result does not depend on the batch around it
        gain = self.magnitude_ema.to(x.dtype).rsqrt()
        y = F.conv2d(x * (styles * gain)[:, :, None, None], weight, padding=plan.conv_kernel - 1)
        if not plan.is_torgb:
            demodulation = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
            y = y * demodulation[:, :, None, None]
        y = y + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        y = upfirdn(y, self.up_filter, up=plan.up_factor, padding=plan.padding, gain=plan.up_factor ** 2)
        if not plan.is_torgb:
            y = F.leaky_relu(y, LRELU_SLOPE) * LRELU_GAIN
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return upfirdn(y, self.down_filter, down=plan.down_factor)


class StyleGAN3Synthesis(nn.Module):
    """Fourier input and the alias-free layers, ``L0 … L{num_layers}`` (the last one ToRGB)."""

    def __init__(self, config: StyleGAN3Config, rng: torch.Generator | None = None) -> None:
        super().__init__()
        stage, plans = layer_plan(config)
        self.input = FourierInput(config.w_dim, stage["channels"], stage["size"], stage["sampling_rate"],
                                  stage["bandwidth"], rng)
        self.layer_names = [plan.name for plan in plans]
        for plan in plans:
            self.add_module(plan.name, AliasFreeLayer(plan, config.w_dim, config.conv_clamp, rng))
        self.output_scale = config.output_scale

    def layers(self) -> list[AliasFreeLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def affines(self) -> list[EqualizedLinear]:
        """The affines that make the styles from ``w``: the input stage's, then each layer's."""
        return [self.input.affine] + [layer.affine for layer in self.layers()]

    def forward(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        """Images from per-layer styles: ``styles[0]`` the input stage's 4, then one per layer."""
        x = self.input(styles[0])
        for layer, layer_styles in zip(self.layers(), styles[1:]):
            x = layer(x, layer_styles)
        return x * self.output_scale


def build_style_layout(synthesis: StyleGAN3Synthesis) -> StyleLayout:
    """StyleSpace: ``input`` (4: rotation and translation, W+ slot 0), then each layer's input
    channels (W+ slot ``i + 1``)."""
    layers, offset = [StyleLayer("input", 0, 4, 0, "input")], 4
    for index, layer in enumerate(synthesis.layers()):
        role = "torgb" if layer.plan.is_torgb else "conv"
        layers.append(StyleLayer(layer.plan.name, index + 1, layer.plan.in_channels, offset, role))
        offset += layer.plan.in_channels
    return StyleLayout(tuple(layers))


class StyleGAN3Generator(MappedStyleGenerator):
    """StyleGAN3 generator with the latent spaces ``z → w → w+ → s`` (module docstring).

    Build one from a checkpoint with :func:`cfexplain.load_generator`, or with random weights from
    a :class:`StyleGAN3Config`.
    """

    def __init__(self, config: StyleGAN3Config, *, seed: Seed = 0) -> None:
        super().__init__()
        rng = make_rng(seed)
        self.config = config
        self.mapping = MappingNetwork(config, rng)
        self.synthesis = StyleGAN3Synthesis(config, rng)
        self.style_layout = build_style_layout(self.synthesis)

    @property
    def transform(self) -> torch.Tensor:
        """The input's user transform (3×3, identity by default): how StyleGAN3 users rotate and
        translate a face. Set it with :meth:`set_transform`."""
        return self.synthesis.input.transform

    def set_transform(self, matrix: torch.Tensor) -> None:
        """Replace the input's user transform by a 3×3 matrix (e.g. the inverse of a rotation and
        translation of the image)."""
        matrix = torch.as_tensor(matrix, dtype=self.transform.dtype, device=self.transform.device)
        if matrix.shape != (3, 3) or not bool(torch.isfinite(matrix).all()):
            raise InputError(f"the transform must be a finite 3×3 matrix, got shape {tuple(matrix.shape)}")
        self.synthesis.input.transform.copy_(matrix)

    def styles_from_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer styles for W+ codes: the input stage's 4, then each layer's."""
        return [affine(ws[:, entry.ws_index]) for affine, entry in zip(self.synthesis.affines(), self.style_layout)]

    def generate(self, codes: torch.Tensor, space: str, noise_mode: NoiseMode, noise_seed: Seed | None,
                 resolution: int | None, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if space == "s":
            styles = self.style_layout.split(codes)
        else:
            styles = self.styles_from_ws(self.convert(codes, space, "w+"))
        return self.synthesis(styles)

    def style_weights(self) -> dict[str, torch.Tensor]:
        return {entry.name: affine.weight for entry, affine in zip(self.style_layout, self.synthesis.affines())}

    def check_resolution(self, resolution: int) -> None:
        raise InputError("StyleGAN3 has no intermediate RGB outputs: early exit (resolution=) is not available; "
                         "synthesize at full resolution and resize")

    def extra_repr(self) -> str:
        c = self.config
        return (f"resolution={c.resolution}, z_dim={c.z_dim}, w_dim={c.w_dim}, mapping_layers={c.mapping_layers}, "
                f"num_ws={c.num_ws}, styles={self.style_layout.total}, radial={c.use_radial_filters}")
