"""rosinality/stylegan2-pytorch checkpoints (``torch.save`` files).

Converted official weights are ``{"g_ema": state_dict, "latent_avg": w_avg}``; training
checkpoints add ``g``, ``d``, optimiser states and ``args`` (an ``argparse.Namespace``) and store
no ``latent_avg``. A bare ``g_ema`` state dict is accepted too. Keys are renamed to the canonical
layout:

==========================================  ==============================================
rosinality                                  canonical (NVlabs)
==========================================  ==============================================
``style.{i}.weight/bias`` (i ≥ 1)           ``mapping.fc{i-1}.weight/bias``
``latent_avg`` (top level)                  ``mapping.w_avg``
``input.input [1,C,4,4]``                   ``synthesis.b4.const [C,4,4]``
``conv1.*`` / ``to_rgb1.*``                 ``synthesis.b4.conv1.*`` / ``synthesis.b4.torgb.*``
``convs.{2i-2}.*`` / ``convs.{2i-1}.*``     ``synthesis.b{4·2^i}.conv0.*`` / ``.conv1.*``
``to_rgbs.{i-1}.*``                         ``synthesis.b{4·2^i}.torgb.*``
``….conv.weight [1,O,I,k,k]``               ``….weight [O,I,k,k]``
``….conv.modulation.*``                     ``….affine.*``
``….activate.bias`` / ``to_rgb….bias``      ``….bias`` (``[1,3,1,1]`` → ``[3]``)
``….noise.weight [1]``                      ``….noise_strength []``
``noises.noise_{n} [1,1,r,r]``              ``noise_const [r,r]`` of layer n (0: b4.conv1)
``…blur.kernel``, ``…upsample.kernel``      the FIR taps of the configuration
==========================================  ==============================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ...errors import CorruptCheckpointError, InputError
from ._canonical import ConfigHints, fir_taps_from_kernel, require_one_network

__all__ = ["is_rosinality_state", "read_rosinality"]

_LAYER = re.compile(r"^(conv1|to_rgb1|convs\.(\d+)|to_rgbs\.(\d+))\.(.+)$")
_NOISE = re.compile(r"^noises\.noise_(\d+)$")
_MAPPING = re.compile(r"^style\.(\d+)\.(weight|bias)$")

_SUFFIXES = {
    "conv.weight": "weight",
    "conv.modulation.weight": "affine.weight",
    "conv.modulation.bias": "affine.bias",
    "activate.bias": "bias",
    "bias": "bias",
    "noise.weight": "noise_strength",
}


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def is_rosinality_state(state: Any) -> bool:
    """Whether ``state`` looks like a rosinality generator state dict."""
    return isinstance(state, Mapping) and any(
        k in _strip_module_prefix(state) for k in ("input.input", "conv1.conv.weight")
    )


def _layer_name(match: re.Match) -> str:
    head, conv_index, rgb_index = match.group(1), match.group(2), match.group(3)
    if head == "conv1":
        return "b4.conv1"
    if head == "to_rgb1":
        return "b4.torgb"
    if conv_index is not None:
        j = int(conv_index)
        return f"b{4 * 2 ** (j // 2 + 1)}.{'conv0' if j % 2 == 0 else 'conv1'}"
    return f"b{4 * 2 ** (int(rgb_index) + 1)}.torgb"


def _noise_layer(n: int) -> str:
    if n == 0:
        return "b4.conv1"
    i = (n + 1) // 2
    return f"b{4 * 2**i}.{'conv0' if n % 2 == 1 else 'conv1'}"


def read_rosinality(obj: Any, network: str = "ema") -> tuple[dict[str, torch.Tensor], ConfigHints]:
    """The canonical state dict and hints from a rosinality checkpoint (dict or bare state dict);
    ``network``: ``"ema"`` for ``g_ema``, ``"training"`` for the training generator ``g``."""
    key = "g_ema" if network == "ema" else "g"
    if isinstance(obj, Mapping) and "g_ema" in obj:
        if key not in obj:
            raise InputError(f"the checkpoint has no {key!r} (network={network!r}); it holds {sorted(obj)[:10]}")
        source, latent_avg = _strip_module_prefix(obj[key]), obj.get("latent_avg")
    else:
        require_one_network(network)
        source, latent_avg = _strip_module_prefix(obj), None
    state: dict[str, torch.Tensor] = {}
    filter_kernel = None
    unknown = []
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise CorruptCheckpointError(f"g_ema[{key!r}] is a {type(value).__name__}, expected a tensor")
        if m := _MAPPING.match(key):
            state[f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}"] = value
        elif key == "input.input":
            state["synthesis.b4.const"] = value.reshape(value.shape[1:])
        elif m := _NOISE.match(key):
            state[f"synthesis.{_noise_layer(int(m.group(1)))}.noise_const"] = value.reshape(value.shape[-2:])
        elif key.endswith(("blur.kernel", "upsample.kernel")):
            filter_kernel = value
        elif (m := _LAYER.match(key)) and m.group(4) in _SUFFIXES:
            name = f"synthesis.{_layer_name(m)}.{_SUFFIXES[m.group(4)]}"
            if m.group(4) == "conv.weight":
                value = value.reshape(value.shape[1:])
            elif m.group(4) == "noise.weight":
                value = value.reshape(())
            elif m.group(4) == "bias":
                value = value.reshape(-1)
            state[name] = value
        else:
            unknown.append(key)
    if unknown:
        raise CorruptCheckpointError(f"unexpected entries in the rosinality generator: {unknown[:8]}")
    if latent_avg is not None:
        state["mapping.w_avg"] = latent_avg.reshape(-1)
    hints = ConfigHints()
    if filter_kernel is not None:
        hints.resample_filter = fir_taps_from_kernel(filter_kernel)
    args = obj.get("args") if isinstance(obj, Mapping) else None
    if args is not None:
        hints.resolution = getattr(args, "size", None)
        hints.mapping_layers = getattr(args, "n_mlp", None)
    return state, hints
