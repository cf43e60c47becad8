"""The one representation every checkpoint reader converts to: an NVlabs-keyed state dict.

Readers rename and reshape tensors into the key layout of :mod:`cfexplain.generators.stylegan2`
(``mapping.fc{i}.*``, ``mapping.w_avg``, ``synthesis.b{r}.{const,conv0,conv1,torgb}.*``) and pass
what the file says about its configuration as :class:`ConfigHints`. :func:`build_generator` infers
the configuration from tensor shapes, cross-checks it with the hints, and builds the generator.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import CorruptCheckpointError, InputError, ShapeError, UnsupportedModelError
from ..._state_dict import check_state_shapes
from ..stylegan2 import StyleGAN2Config, StyleGAN2Generator

__all__ = ["ConfigHints", "NETWORKS", "build_generator", "fir_taps_from_kernel", "load_weights", "read_state_dict",
           "require_one_network", "W_AVG_SAMPLES"]

NETWORKS = ("ema", "training")
"""Which generator of a checkpoint to read: the moving average of the weights (``G_ema``, ``Gs``,
``g_ema``: what is published and sampled from) or the training generator (``G``, ``g``)."""

W_AVG_SAMPLES = 10_000
"""Samples used to estimate ``w_avg`` for checkpoints that do not store it."""

_BLOCK_KEY = re.compile(r"^synthesis\.b(\d+)\.")
_MAPPING_KEY = re.compile(r"^mapping\.fc(\d+)\.weight$")


@dataclass
class ConfigHints:
    """What a file states about its configuration (``None`` where it says nothing).

    Shapes are the ground truth; a hint that contradicts them means a damaged or mislabelled
    file, and the hint-only settings (learning-rate multiplier, clamp, filter) fill what shapes
    cannot tell.
    """

    resolution: int | None = None
    z_dim: int | None = None
    w_dim: int | None = None
    c_dim: int | None = None
    img_channels: int | None = None
    mapping_layers: int | None = None
    mapping_lr_multiplier: float | None = None
    conv_clamp: float | None = None
    architecture: str | None = None
    resample_filter: tuple[float, ...] | None = None


def require_one_network(network: str) -> None:
    """A bare state dict holds one generator, which is read as it is; asking it for the training
    generator is refused."""
    if network != "ema":
        raise InputError(f"the file is a bare state dict holding one generator; network={network!r} needs a "
                         "checkpoint that holds both the training and the moving-average generators")


def read_state_dict(obj: Mapping[str, torch.Tensor], network: str = "ema") -> tuple[dict, ConfigHints]:
    """A plain state dict in the canonical (NVlabs) layout, as it is."""
    require_one_network(network)
    return dict(obj), ConfigHints()


def fir_taps_from_kernel(kernel: torch.Tensor) -> tuple[float, ...]:
    """The 1-D taps of a stored separable 2-D FIR kernel (any scale), normalised to sum 1."""
    kernel = kernel.detach().to(torch.float64)
    if kernel.ndim == 1:
        taps = kernel
    else:
        taps = kernel.sum(dim=1)
        if not torch.allclose(torch.outer(taps, taps) / taps.sum() ** 2, kernel / kernel.sum(), atol=1e-6):
            raise UnsupportedModelError("the checkpoint's resampling filter is not separable")
    return tuple((taps / taps.sum()).tolist())


def _detect_unsupported(state: Mapping[str, torch.Tensor], hints: ConfigHints) -> None:
    if any(k.startswith("synthesis.input.") or re.match(r"^synthesis\.L\d+_", k) for k in state):
        raise UnsupportedModelError(
            "this is a StyleGAN3 state dict without its configuration: cfexplain reads StyleGAN3 generators "
            "from NVlabs pickles (stylegan3-*.pkl), whose constructor kwargs give the network's schedule"
        )
    if (hints.c_dim or 0) > 0 or "mapping.embed.weight" in state:
        raise UnsupportedModelError(
            "this is a conditional (class-label) StyleGAN2 generator; cfexplain supports "
            "unconditional generators only"
        )
    if hints.architecture not in (None, "skip"):
        raise UnsupportedModelError(
            f"the generator uses the {hints.architecture!r} synthesis architecture; cfexplain supports "
            "the standard 'skip' architecture (config E/F)"
        )
    if any(re.match(r"^synthesis\.b\d+\.skip\.", k) for k in state):
        raise UnsupportedModelError(
            "the generator has residual ('resnet') synthesis blocks; cfexplain supports the standard "
            "'skip' architecture (config E/F)"
        )


def _infer_config(state: Mapping[str, torch.Tensor], hints: ConfigHints) -> StyleGAN2Config:
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CorruptCheckpointError(f"the generator weights have no entry {key!r}")
        return tuple(state[key].shape)

    mapping_ids = sorted(int(m.group(1)) for k in state if (m := _MAPPING_KEY.match(k)))
    if not mapping_ids or mapping_ids != list(range(len(mapping_ids))):
        raise CorruptCheckpointError(f"mapping layers are missing or not numbered 0..n-1 (found {mapping_ids})")
    resolutions = sorted({int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))})
    resolution = resolutions[-1] if resolutions else 0
    expected_blocks = [2**k for k in range(2, int(math.log2(max(resolution, 4))) + 1)]
    if resolution < 4 or resolutions != expected_blocks:
        raise CorruptCheckpointError(f"synthesis blocks must be b4, b8, … up to the resolution; found {resolutions}")

    n_mapping = len(mapping_ids)
    channels = {4: shape("synthesis.b4.const")[0]}
    for res in expected_blocks[1:]:
        channels[res] = shape(f"synthesis.b{res}.conv1.weight")[0]
    config = StyleGAN2Config(
        resolution=resolution,
        channels=channels,
        z_dim=shape("mapping.fc0.weight")[1],
        w_dim=shape("synthesis.b4.conv1.affine.weight")[1],
        mapping_layers=n_mapping,
        mapping_features=shape("mapping.fc0.weight")[0] if n_mapping > 1 else None,
        mapping_lr_multiplier=hints.mapping_lr_multiplier if hints.mapping_lr_multiplier is not None else 0.01,
        img_channels=shape(f"synthesis.b{resolution}.torgb.weight")[0],
        conv_clamp=hints.conv_clamp,
        resample_filter=hints.resample_filter or (1.0, 3.0, 3.0, 1.0),
    )
    stated = {
        "resolution": (hints.resolution, config.resolution),
        "z_dim": (hints.z_dim, config.z_dim),
        "w_dim": (hints.w_dim, config.w_dim),
        "img_channels": (hints.img_channels, config.img_channels),
        "mapping_layers": (hints.mapping_layers, config.mapping_layers),
    }
    conflicts = [f"{k}: file says {said}, weights have {found}" for k, (said, found) in stated.items()
                 if said is not None and said != found]
    if conflicts:
        raise CorruptCheckpointError("the file's configuration contradicts its weights: " + "; ".join(conflicts))
    return config


def load_weights(generator: nn.Module, state: Mapping[str, torch.Tensor], *, configuration: str) -> None:
    """Load ``state`` (as float32) into ``generator`` exactly and freeze it in eval mode; a
    mismatch is a :class:`~cfexplain.errors.ShapeError` naming ``configuration``."""
    try:
        check_state_shapes(generator, state)
    except ShapeError as exc:
        raise ShapeError(f"{exc} ({configuration})") from None
    generator.load_state_dict({k: v.detach().to(torch.float32) for k, v in state.items()})
    generator.requires_grad_(False).eval()


def build_generator(
    state: MutableMapping[str, torch.Tensor],
    hints: ConfigHints,
    *,
    provenance: dict[str, str],
    device: torch.device | str = "cpu",
) -> StyleGAN2Generator:
    """Build a :class:`StyleGAN2Generator` from an NVlabs-keyed state dict.

    ``resample_filter`` entries are consumed (their taps become part of the configuration). A
    missing ``mapping.w_avg`` is estimated from :data:`W_AVG_SAMPLES` mapped samples (seed 0) and
    noted in ``provenance``.

    Raises:
        UnsupportedModelError: StyleGAN3, conditional or non-"skip" generators.
        CorruptCheckpointError: missing tensors, or a configuration that contradicts the weights.
        ShapeError: tensors whose shapes do not fit the inferred network.
    """
    _detect_unsupported(state, hints)
    filters = [k for k in state if k.endswith("resample_filter")]
    if filters and hints.resample_filter is None:
        hints.resample_filter = fir_taps_from_kernel(state[filters[0]])
    for key in filters:
        del state[key]
    config = _infer_config(state, hints)
    generator = StyleGAN2Generator(config)
    has_w_avg = "mapping.w_avg" in state
    if not has_w_avg:
        state["mapping.w_avg"] = torch.zeros(config.w_dim)
    load_weights(generator, state, configuration=f"inferred configuration: {config}")
    if not has_w_avg:
        warnings.warn(
            f"the checkpoint stores no average w; estimating it from {W_AVG_SAMPLES} samples (seed 0)",
            stacklevel=3,
        )
        with torch.no_grad():
            z = torch.randn(W_AVG_SAMPLES, config.z_dim, generator=torch.Generator().manual_seed(0))
            generator.mapping.w_avg.copy_(generator.mapping(z).mean(dim=0))
        provenance = {**provenance, "w_avg": f"estimated from {W_AVG_SAMPLES} samples"}
    generator.provenance = provenance
    return generator.to(device)
