"""A clean re-implementation of the StyleGAN2 generator (config E/F, "skip" architecture).

The network is written from the published equations; parameter names follow the widely used
NVlabs state-dict layout (``mapping.fc0.weight``, ``synthesis.b8.conv0.affine.bias`` …) so that
checkpoints of every format convert to it by renaming alone. Read top to bottom, the module follows
the data: equalised linear layer → mapping network → FIR resampling → modulated convolution →
ToRGB → synthesis block → synthesis network → the :class:`StyleGAN2Generator` with its latent
spaces ``z → w → w+ → s``.

The numbers that matter, where they act:

* equalised learning rate: weights are stored unscaled and multiplied at run time by
  ``lr_multiplier / sqrt(fan_in)``; biases by ``lr_multiplier`` (0.01 in the mapping network);
* activations: ``leaky_relu(x + b, 0.2) · sqrt(2)``, optionally clamped to ``±conv_clamp``;
* ``z`` is normalised by its second moment, ``z / sqrt(mean(z²) + 1e-8)``;
* modulated 3×3 convolution with demodulation ``1 / sqrt(Σ (w·s)² + 1e-8)``;
* up-sampling: transposed 3×3 convolution, stride 2, then the FIR low-pass ``[1, 3, 3, 1]``
  (outer product, normalised to sum 1, gain 4);
* the style vectors ``s`` (StyleSpace) are the affine outputs *before* the ToRGB weight gain
  ``1/sqrt(C_in)``, i.e. the values of the TensorFlow original and the StyleSpace paper.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .base import Generator, NoiseMode, Seed, make_rng

__all__ = [
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "StyleLayer",
    "StyleLayout",
]

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
EPS = 1e-8


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class StyleGAN2Config:
    """Hyper-parameters of a StyleGAN2 generator (everything needed to build it).

    Attributes:
        resolution: output height and width, a power of two ≥ 4.
        channels: feature channels of each synthesis block, keyed by block resolution
            (4, 8, …, ``resolution``).
        z_dim: dimension of ``z``.
        w_dim: dimension of ``w`` (and input of every style affine).
        mapping_layers: number of fully connected layers in the mapping network.
        mapping_features: width of the hidden mapping layers (defaults to ``w_dim``).
        mapping_lr_multiplier: equalised-learning-rate multiplier of the mapping network.
        img_channels: channels of the output image.
        conv_clamp: clamp activations and ToRGB outputs to ``±conv_clamp`` (``None``: no clamp).
        resample_filter: 1-D taps of the separable FIR filter used for up-sampling (stored
            normalised to sum 1).
    """

    resolution: int
    channels: Mapping[int, int]
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_features: int | None = None
    mapping_lr_multiplier: float = 0.01
    img_channels: int = 3
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)

    def __post_init__(self) -> None:
        res = self.resolution
        if not isinstance(res, int) or res < 4 or res & (res - 1):
            raise InputError(f"resolution must be a power of two ≥ 4, got {res!r}")
        missing = [r for r in self.block_resolutions if r not in self.channels]
        if missing:
            raise InputError(f"channels has no entry for block resolutions {missing}")
        if self.mapping_layers < 1:
            raise InputError(f"mapping_layers must be ≥ 1, got {self.mapping_layers}")
        object.__setattr__(self, "channels", {r: int(self.channels[r]) for r in self.block_resolutions})
        if self.mapping_features == self.w_dim or self.mapping_layers == 1:
            object.__setattr__(self, "mapping_features", None)
        taps = [float(t) for t in self.resample_filter]
        if not taps or sum(taps) == 0:
            raise InputError(f"resample_filter must be non-empty taps with a non-zero sum, got {taps}")
        object.__setattr__(self, "resample_filter", tuple(t / sum(taps) for t in taps))

    @classmethod
    def from_channel_base(
        cls, resolution: int, *, channel_base: int = 32768, channel_max: int = 512, **kwargs
    ) -> "StyleGAN2Config":
        """Config with the standard channel schedule ``min(channel_base // r, channel_max)``.

        ``channel_base=32768`` is config-f (rosinality ``channel_multiplier=2``); 16384 is the
        "paper256" / TensorFlow config-e schedule. Other keyword arguments go to the constructor.
        """
        log2 = int(math.log2(resolution))
        channels = {2**k: min(channel_base // 2**k, channel_max) for k in range(2, log2 + 1)}
        return cls(resolution=resolution, channels=channels, **kwargs)

    @classmethod
    def config_f(cls, resolution: int = 1024) -> "StyleGAN2Config":
        """The official StyleGAN2 config-f shapes (512-d latents, 8 mapping layers)."""
        return cls.from_channel_base(resolution, channel_base=32768, channel_max=512)

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        """Resolutions of the synthesis blocks: 4, 8, …, ``resolution``."""
        return tuple(2**k for k in range(2, int(math.log2(self.resolution)) + 1))

    @property
    def num_ws(self) -> int:
        """Number of W+ slots, ``2·log2(resolution) − 2``."""
        return 2 * int(math.log2(self.resolution)) - 2


# --------------------------------------------------------------------------- StyleSpace layout


@dataclass(frozen=True)
class StyleLayer:
    """One modulated layer's block of StyleSpace.

    Attributes:
        name: layer name, e.g. ``"b64.conv1"`` or ``"b4.torgb"``.
        ws_index: the W+ slot whose ``w`` the layer's affine reads.
        size: number of style channels (the layer's input channels).
        offset: position of the layer's first channel in the flat style vector ``s``.
        role: ``"conv"`` (a modulated convolution's channel styles), ``"torgb"`` (a ToRGB layer's,
            not demodulated) or ``"input"`` (StyleGAN3's input transform: geometric numbers,
            not channel styles).
    """

    name: str
    ws_index: int
    size: int
    offset: int
    role: str = "conv"

    @property
    def slice(self) -> slice:
        """The layer's channels in the flat style vector."""
        return slice(self.offset, self.offset + self.size)

    @property
    def is_torgb(self) -> bool:
        """Whether this is a ToRGB layer (no demodulation)."""
        return self.role == "torgb"


@dataclass(frozen=True)
class StyleLayout(Sequence[StyleLayer]):
    """The StyleSpace table: every modulated layer in generator order, ToRGB layers included.

    Layers can be addressed by position (counting ToRGB layers, as StyleSpace does: "layer 6,
    channel 501") or by name (``"b64.conv1"``).

    >>> layout = generator.style_layout          # doctest: +SKIP
    >>> layout.index(6, 501)                     # flat index of layer 6, channel 501 in s
    """

    layers: tuple[StyleLayer, ...]
    _by_name: dict[str, StyleLayer] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {layer.name: layer for layer in self.layers})

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[StyleLayer]:
        return iter(self.layers)

    def __getitem__(self, key):  # type: ignore[override]
        """A layer by position or by name."""
        if isinstance(key, str):
            try:
                return self._by_name[key]
            except KeyError:
                raise InputError(f"no style layer named {key!r}; layers are {list(self._by_name)}") from None
        return self.layers[key]

    @property
    def total(self) -> int:
        """Size of the flat style vector ``s``."""
        return sum(layer.size for layer in self.layers)

    def index(self, layer: int | str, channel: int) -> int:
        """Flat index in ``s`` of ``channel`` of ``layer`` (a position or a name)."""
        entry = self[layer]
        if not 0 <= channel < entry.size:
            raise InputError(f"layer {entry.name} has {entry.size} channels, got channel {channel}")
        return entry.offset + channel

    def locate(self, index: int) -> tuple[StyleLayer, int]:
        """The ``(layer, channel)`` that flat index ``index`` of ``s`` belongs to."""
        for entry in self.layers:
            if entry.offset <= index < entry.offset + entry.size:
                return entry, index - entry.offset
        raise InputError(f"style index {index} is outside [0, {self.total})")

    def split(self, styles: torch.Tensor) -> list[torch.Tensor]:
        """Split flat styles ``(N, total)`` into one ``(N, size)`` tensor per layer."""
        return list(torch.split(styles, [layer.size for layer in self.layers], dim=1))

    def to_records(self) -> list[dict[str, int | str]]:
        """The table as a list of dicts (for JSON or ``pandas.DataFrame``)."""
        return [
            {"name": e.name, "ws_index": e.ws_index, "size": e.size, "offset": e.offset}
            for e in self.layers
        ]


def build_style_layout(config: StyleGAN2Config) -> StyleLayout:
    """The StyleSpace layout of ``config``: ``b4.conv1, b4.torgb, b8.conv0, b8.conv1, b8.torgb, …``.

    W+ slots: ``b4.conv1 ← 0``, ``b4.torgb ← 1``; for block ``2^k`` (k ≥ 3): ``conv0 ← 2k−5``,
    ``conv1 ← 2k−4``, ``torgb ← 2k−3`` (each ToRGB shares its slot with the next block's conv0).
    Sizes are the layers' input channels.
    """
    layers: list[StyleLayer] = []
    offset = 0

    def add(name: str, ws_index: int, size: int) -> None:
        nonlocal offset
        layers.append(StyleLayer(name, ws_index, size, offset, "torgb" if name.endswith("torgb") else "conv"))
        offset += size

    ch = config.channels
    add("b4.conv1", 0, ch[4])
    add("b4.torgb", 1, ch[4])
    for res in config.block_resolutions[1:]:
        k = int(math.log2(res))
        add(f"b{res}.conv0", 2 * k - 5, ch[res // 2])
        add(f"b{res}.conv1", 2 * k - 4, ch[res])
        add(f"b{res}.torgb", 2 * k - 3, ch[res])
    return StyleLayout(tuple(layers))


# --------------------------------------------------------------------------- building blocks


def _leaky_relu(x: torch.Tensor, clamp: float | None) -> torch.Tensor:
    x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
    return x if clamp is None else x.clamp(-clamp, clamp)


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalised learning rate.

    ``y = x · (W · lr/sqrt(in))ᵀ + b · lr``, followed by the scaled leaky ReLU if ``activation``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        activation: bool = False,
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features, generator=rng) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return _leaky_relu(x, None) if self.activation else x


class MappingNetwork(nn.Module):
    """``z → w``: second-moment normalisation, then ``mapping_layers`` equalised FC layers.

    Holds ``w_avg``, the average ``w`` used by the truncation trick.
    """

    def __init__(self, config: StyleGAN2Config, rng: torch.Generator | None = None) -> None:
        super().__init__()
        hidden = config.mapping_features or config.w_dim
        dims = [config.z_dim] + [hidden] * (config.mapping_layers - 1) + [config.w_dim]
        self.layer_names = [f"fc{i}" for i in range(config.mapping_layers)]
        for name, d_in, d_out in zip(self.layer_names, dims[:-1], dims[1:]):
            layer = EqualizedLinear(
                d_in, d_out, lr_multiplier=config.mapping_lr_multiplier, activation=True, rng=rng
            )
            self.add_module(name, layer)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + EPS)
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """``w_avg + ψ (w − w_avg)``."""
        return w if psi == 1.0 else self.w_avg + psi * (w - self.w_avg)


def _fir_filter_2d(taps: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum 1."""
    t = torch.tensor(taps, dtype=torch.float32)
    kernel = torch.outer(t, t)
    return kernel / kernel.sum()


def _fir(x: torch.Tensor, kernel: torch.Tensor, pad0: int, pad1: int, gain: float) -> torch.Tensor:
    """Pad every spatial side by (``pad0`` before, ``pad1`` after), then convolve each channel
    with ``kernel · gain`` (a true convolution, i.e. the kernel flipped)."""
    channels = x.shape[1]
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    weight = (kernel.flip([0, 1]) * gain).to(x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels)


def _upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """×2 up-sampling: zero insertion, then the FIR low-pass with gain 4."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * h, 2 * w)
    k = kernel.shape[0]
    return _fir(x, kernel, (k + 1) // 2, (k - 2) // 2, gain=4.0)


class ModulatedConv(nn.Module):
    """A synthesis layer: modulated, demodulated 3×3 convolution (optionally up-sampling ×2),
    per-pixel noise, bias and scaled leaky ReLU.

    Parameters (NVlabs names): ``affine`` (style affine, bias initialised to 1), ``weight
    [C_out, C_in, 3, 3]``, ``bias [C_out]``, ``noise_strength []`` and the buffer
    ``noise_const [r, r]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: bool,
        conv_clamp: float | None,
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0, rng=rng)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3, generator=rng))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution, generator=rng))
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        if not self.up:
            return F.conv2d(x, weight, padding=1)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        k = kernel.shape[0]
        return _fir(x, kernel, (k + 1) // 2 - 1, (k - 2) // 2, gain=4.0)

    def forward(
        self,
        x: torch.Tensor,
        style: torch.Tensor,
        kernel: torch.Tensor,
        noise_mode: NoiseMode,
        noise_rng: torch.Generator | None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``noise``: per-image maps ``(N, 1, r, r)`` instead of ``noise_mode``'s."""
        weight = self.weight
        # Demodulation 1/sqrt(Σ_{i,k} (w_oik s_i)² + eps) = 1/sqrt(s² · Σ_k w_oik² + eps).
        demod = torch.rsqrt(style.square() @ weight.square().sum(dim=(2, 3)).t() + EPS)
        if x.shape[0] == 1 and not torch.is_grad_enabled():
            # One image, no gradients: fold style, demodulation and gain into the weights, so
            # that the activations are touched once by the convolution and once by the epilogue.
            weight = weight * style[0][None, :, None, None] * (demod[0] * LRELU_GAIN)[:, None, None, None]
            demod = torch.ones_like(demod)
        else:
            # Modulate the activations instead of the weights: one convolution shared by the
            # batch, and no per-sample weight gradients in backward passes.
            x = x * style[:, :, None, None]
            demod = demod * LRELU_GAIN
        x = self._convolve(x, weight, kernel)
        # leaky_relu(x·d + noise + b)·√2 = leaky_relu(x·√2d + √2(noise + b)), as leaky ReLU is
        # positively homogeneous: the gain rides on the demodulation and the offsets.
        x = torch.addcmul((self.bias * LRELU_GAIN)[None, :, None, None], x, demod[:, :, None, None])
        if noise is None and noise_mode == "const":
            noise = self.noise_const[None, None]
        elif noise is None and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, generator=noise_rng)
            noise = noise.to(device=x.device, dtype=x.dtype)
        if noise is not None:
            x = x.add_(noise * (self.noise_strength * LRELU_GAIN))  # (N|1, 1, r, r), broadcast
        # In place, autograd keeps the activation's output, the very tensor the next layer's
        # modulation keeps too: one stored activation fewer per layer in backward passes.
        x = F.leaky_relu(x, LRELU_SLOPE, inplace=True)
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1×1 convolution to RGB, without demodulation.

    The style is scaled by the weight gain ``1/sqrt(C_in)`` here, so the style vector itself
    keeps its StyleSpace value.
    """

    def __init__(
        self,
        in_channels: int,
        img_channels: int,
        w_dim: int,
        *,
        conv_clamp: float | None,
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0, rng=rng)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1, generator=rng))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # A 1×1 convolution with per-sample weights is a batched matrix product over channels:
        # the modulation folds into the small (N, 3, C) weights instead of a pass over x.
        weight = self.weight[None, :, :, 0, 0] * (style * self.weight_gain)[:, None, :]
        x = torch.matmul(x.permute(0, 2, 3, 1), weight.transpose(1, 2)[:, None]).permute(0, 3, 1, 2)
        x = x + self.bias[None, :, None, None]
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator.

    Block 4: learned ``const`` → ``conv1`` → ``torgb``. Block r ≥ 8: ``conv0`` (up-sampling) →
    ``conv1`` → ``torgb``, added to the up-sampled image of the previous block.
    """

    def __init__(self, config: StyleGAN2Config, resolution: int, rng: torch.Generator | None) -> None:
        super().__init__()
        ch = config.channels
        out_ch = ch[resolution]
        self.resolution = resolution
        conv = dict(conv_clamp=config.conv_clamp, rng=rng)
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4, generator=rng))
        else:
            self.conv0 = ModulatedConv(ch[resolution // 2], out_ch, config.w_dim, resolution, up=True, **conv)
        self.conv1 = ModulatedConv(out_ch, out_ch, config.w_dim, resolution, up=False, **conv)
        self.torgb = ToRGB(out_ch, config.img_channels, config.w_dim, **conv)

    def layers(self) -> list[nn.Module]:
        """The block's modulated layers in StyleSpace order."""
        first = [] if self.resolution == 4 else [self.conv0]
        return first + [self.conv1, self.torgb]


class SynthesisNetwork(nn.Module):
    """The blocks ``b4 … b{resolution}``, driven by one style tensor per modulated layer."""

    def __init__(self, config: StyleGAN2Config, rng: torch.Generator | None = None) -> None:
        super().__init__()
        self.block_resolutions = config.block_resolutions
        for res in self.block_resolutions:
            self.add_module(f"b{res}", SynthesisBlock(config, res, rng))
        self.register_buffer("resample_kernel", _fir_filter_2d(config.resample_filter), persistent=False)

    def blocks(self, resolution: int | None = None) -> list[SynthesisBlock]:
        """The blocks up to ``resolution`` (all of them for ``None``)."""
        stop = resolution or self.block_resolutions[-1]
        return [getattr(self, f"b{r}") for r in self.block_resolutions if r <= stop]

    def modulated_layers(self, resolution: int | None = None) -> list[nn.Module]:
        """Every modulated layer (ToRGB included) up to ``resolution``, in StyleSpace order."""
        return [layer for block in self.blocks(resolution) for layer in block.layers()]

    def forward(
        self,
        styles: Sequence[torch.Tensor],
        noise_mode: NoiseMode = "const",
        noise_rng: torch.Generator | None = None,
        resolution: int | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Image from per-layer styles (StyleSpace order); stops after block ``resolution``.
        ``noise``: per-image maps for every noise input (:meth:`StyleGAN2Generator.noise_maps`)."""
        kernel = self.resample_kernel
        style_iter = iter(styles)
        noise_iter = iter(noise) if noise is not None else None

        def maps() -> torch.Tensor | None:
            return next(noise_iter) if noise_iter is not None else None

        x = img = None
        for block in self.blocks(resolution):
            if block.resolution == 4:
                # Channels-last activations: oneDNN's convolutions run markedly faster on them.
                x = block.const.unsqueeze(0).expand(styles[0].shape[0], -1, -1, -1)
                x = x.contiguous(memory_format=torch.channels_last)
            else:
                x = block.conv0(x, next(style_iter), kernel, noise_mode, noise_rng, maps())
            x = block.conv1(x, next(style_iter), kernel, noise_mode, noise_rng, maps())
            rgb = block.torgb(x, next(style_iter))
            img = rgb if img is None else _upsample2d(img, kernel) + rgb
        return img.contiguous()


# --------------------------------------------------------------------------- the generator


MAX_NOISE_STRENGTH = 100.0
"""The largest noise strength a StyleGAN2 checkpoint may store (trained networks keep them well
under 1: the noise is added to unit-variance, demodulated activations)."""
MAX_AVERAGE_RATIO = 100.0
"""How many times farther from zero than any mapped ``w`` the stored ``w_avg`` may lie."""


class MappedStyleGenerator(Generator):
    """The latent chain StyleGAN families share: ``z → w → w+ → s``.

    * ``"z"``: ``(N, z_dim)`` Gaussian input of the mapping network;
    * ``"w"``: ``(N, w_dim)`` mapping output, broadcast to every W+ slot;
    * ``"w+"``: ``(N, num_ws, w_dim)``, one ``w`` per W+ slot;
    * ``"s"``: ``(N, style_layout.total)``, StyleSpace: every layer's affine output, laid out as
      :attr:`style_layout` says.

    A family sets ``config`` (with ``resolution``, ``z_dim``, ``w_dim``, ``num_ws``), ``mapping``
    (a :class:`MappingNetwork`) and ``style_layout``, and implements :meth:`styles_from_ws` and
    ``generate``.
    """

    spaces = ("z", "w", "w+", "s")
    default_space = "w+"
    face_framing = "ffhq"
    discovery_space = "w"

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_ws(self) -> int:
        """Number of W+ slots."""
        return self.config.num_ws

    def latent_shape(self, space: str) -> tuple[int, ...]:
        self.check_space(space)
        c = self.config
        return {
            "z": (c.z_dim,),
            "w": (c.w_dim,),
            "w+": (c.num_ws, c.w_dim),
            "s": (self.style_layout.total,),
        }[space]

    def convert(
        self, codes: torch.Tensor, src: str, dst: str, *, truncation: float = 1.0
    ) -> torch.Tensor:
        """Convert codes forward along ``z → w → w+ → s``.

        Truncation ``w_avg + ψ (w − w_avg)`` is applied when the conversion starts at ``"z"``
        and passes through ``"w"``; converting from ``"w"`` or later leaves codes as given.
        """
        self.check_conversion(src, dst, truncation)
        if truncation != 1.0 and (src != "z" or dst == "z"):
            raise InputError(
                f"truncation applies when mapping z to w; it cannot be applied converting {src!r} "
                f"to {dst!r} (truncate w with generator.mapping.truncate instead)"
            )
        x = codes
        if src == "z" and dst != "z":
            x = self.mapping.truncate(self.mapping(x), truncation)
        if src in ("z", "w") and dst in ("w+", "s"):
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if dst == "s" and src != "s":
            x = torch.cat(self.styles_from_ws(x), dim=1)
        return x

    @abc.abstractmethod
    def styles_from_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer styles ``[(N, size_l)]`` of W+ codes, in :attr:`style_layout` order."""

    def inversion_space(self, space: str) -> str:
        """Photos are inverted in ``w+`` for StyleSpace codes (then converted), else in ``space``."""
        return "w+" if space == "s" else space


class StyleGAN2Generator(MappedStyleGenerator):
    """StyleGAN2 generator with the latent spaces ``z → w → w+ → s``.

    * ``"z"``: ``(N, z_dim)`` Gaussian input of the mapping network;
    * ``"w"``: ``(N, w_dim)`` mapping output, broadcast to every layer;
    * ``"w+"``: ``(N, num_ws, w_dim)``, one ``w`` per W+ slot;
    * ``"s"``: ``(N, style_layout.total)``, StyleSpace: every layer's affine output, ToRGB
      included, laid out as :attr:`style_layout` says.

    Build one from a checkpoint with :func:`cfexplain.load_generator`, or with random weights
    from a :class:`StyleGAN2Config` (useful for tests and benchmarks).

    Args:
        config: the network's hyper-parameters.
        seed: seed of the random initial weights (the NVlabs initialisation: unit Gaussian
            weights, affine biases 1, zero noise strengths).
    """

    def __init__(self, config: StyleGAN2Config, *, seed: Seed = 0) -> None:
        super().__init__()
        rng = make_rng(seed)
        self.config = config
        self.mapping = MappingNetwork(config, rng)
        self.synthesis = SynthesisNetwork(config, rng)
        self.style_layout = build_style_layout(config)

    def styles_from_ws(self, ws: torch.Tensor, resolution: int | None = None) -> list[torch.Tensor]:
        """Per-layer styles ``[(N, size_l)]`` for W+ codes, up to block ``resolution``."""
        layers = self.synthesis.modulated_layers(resolution)
        return [layer.affine(ws[:, entry.ws_index]) for layer, entry in zip(layers, self.style_layout)]

    def generate(
        self,
        codes: torch.Tensor,
        space: str,
        noise_mode: NoiseMode,
        noise_seed: Seed | None,
        resolution: int | None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        noise_rng = make_rng(noise_seed) if noise_mode == "random" and noise_seed is not None else None
        if space == "s":
            styles = self.style_layout.split(codes)
        else:
            ws = self.convert(codes, space, "w+")
            styles = self.styles_from_ws(ws, resolution)
        return self.synthesis(styles, noise_mode, noise_rng, resolution, noise)

    def noise_maps(self) -> list[torch.Tensor]:
        return [layer.noise_const for layer in self.synthesis.modulated_layers() if isinstance(layer, ModulatedConv)]

    def style_weights(self) -> dict[str, torch.Tensor]:
        return {entry.name: layer.affine.weight
                for entry, layer in zip(self.style_layout, self.synthesis.modulated_layers())}

    def check_statistics(self) -> None:
        """Refuse a noise strength above :data:`MAX_NOISE_STRENGTH` in magnitude, or a ``w_avg``
        more than :data:`MAX_AVERAGE_RATIO` times farther from zero than any mapped ``w`` of 64 faces
        (a trained ``w_avg`` is their running mean; an untrained one is zero)."""
        for index, layer in enumerate(self.synthesis.modulated_layers()):
            strength = getattr(layer, "noise_strength", None)
            if strength is not None and not abs(float(strength)) <= MAX_NOISE_STRENGTH:
                raise ValueError(f"the noise strength of layer {self.style_layout[index].name} is {float(strength):.3g}, "
                                 f"outside ±{MAX_NOISE_STRENGTH:g}")
        with torch.no_grad():
            ws = self.mapping(self.sample(64, seed=0))
        reach = float(ws.abs().max())
        average = float(self.mapping.w_avg.abs().max())
        if not average <= MAX_AVERAGE_RATIO * max(reach, 1e-6):
            raise ValueError(f"the stored average w (w_avg / latent_avg) reaches {average:.3g}, more than {MAX_AVERAGE_RATIO:g} "
                             f"times farther than any mapped w ({reach:.3g})")

    def check_resolution(self, resolution: int) -> None:
        if resolution not in self.config.block_resolutions:
            raise InputError(
                f"resolution must be one of the block resolutions {list(self.config.block_resolutions)}, "
                f"got {resolution}"
            )

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"resolution={c.resolution}, z_dim={c.z_dim}, w_dim={c.w_dim}, "
            f"mapping_layers={c.mapping_layers}, num_ws={c.num_ws}, styles={self.style_layout.total}"
        )
