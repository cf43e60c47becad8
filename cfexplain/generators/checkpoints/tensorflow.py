"""Official TensorFlow StyleGAN2 pickles (NVlabs/stylegan2 and stylegan2-ada TF releases).

The file is a pickled tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects; only the
moving-average generator ``Gs`` is used. Each network's state holds ``static_kwargs``, nested
``components`` (``mapping``, ``synthesis``) and ``variables``, a list of ``(name, ndarray)``.
Conversion to the canonical layout:

* dense weights ``[in, out]`` are transposed; conv weights go ``HWIO → OIHW``; ``Conv0_up``
  weights are also flipped in both spatial axes (TF implements the up-sampling convolution as a
  transposed convolution);
* ``mod_weight``/``mod_bias`` become the style affine, with the ``+1`` TF adds at run time folded
  into the bias;
* ``const [1,C,4,4] → [C,4,4]``; ``noise{n} [1,1,r,r]`` → the ``noise_const`` of modulated layer n;
  ``dlatent_avg → w_avg``; ``lod`` is ignored.

``channel_base`` (PyTorch) = 2 × ``fmap_base`` (TF), but channels are read from the weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...errors import CorruptCheckpointError, UnknownCheckpointFormatError, UnsupportedModelError
from ._canonical import ConfigHints
from ._safe_pickle import TFNetwork

__all__ = ["is_tensorflow", "read_tensorflow"]

_MAPPING = re.compile(r"^mapping/Dense(\d+)/(weight|bias)$")
_NOISE = re.compile(r"^synthesis/noise(\d+)$")
_SYNTH = re.compile(r"^synthesis/(\d+)x\d+/(Const|Conv|Conv0_up|Conv1|ToRGB)/(\w+)$")
_LAYERS = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb"}
_IGNORED = {"lod"}


def is_tensorflow(obj: Any) -> bool:
    """Whether an unpickled object is the ``(G, D, Gs)`` tuple of a TF StyleGAN2 pickle."""
    return isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetwork) for n in obj)


def _variables(network: TFNetwork, prefix: str = "") -> dict[str, np.ndarray]:
    state = network.state
    out: dict[str, np.ndarray] = {}
    for name, value in state.get("variables") or []:
        if not isinstance(name, str):
            raise CorruptCheckpointError(f"a variable of network {state.get('name')!r} has a non-string name")
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "biuf":
            raise CorruptCheckpointError(f"variable {prefix + name!r} is a {type(value).__name__}, expected a numeric "
                                         f"numpy array")
        out[prefix + name] = np.asarray(value)
    for comp_name, component in (state.get("components") or {}).items():
        if not isinstance(component, TFNetwork):
            raise CorruptCheckpointError(f"component {comp_name!r} is a {type(component).__name__}, expected a Network")
        out.update(_variables(component, f"{prefix}{comp_name}/"))
    return out


def _noise_layer(n: int) -> str:
    if n == 0:
        return "b4.conv1"
    k = (n + 5) // 2
    return f"b{2**k}.{'conv0' if n == 2 * k - 5 else 'conv1'}"


def _convert(name: str, value: np.ndarray) -> tuple[str, torch.Tensor] | None:
    tensor = torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
    if name == "dlatent_avg":
        return "mapping.w_avg", tensor
    if name in _IGNORED:
        return None
    if m := _MAPPING.match(name):
        return f"mapping.fc{m.group(1)}.{m.group(2)}", tensor.t() if m.group(2) == "weight" else tensor
    if m := _NOISE.match(name):
        return f"synthesis.{_noise_layer(int(m.group(1)))}.noise_const", tensor.reshape(tensor.shape[-2:])
    if not (m := _SYNTH.match(name)):
        raise UnsupportedModelError(
            f"unexpected variable {name!r}: this TensorFlow pickle is not a StyleGAN2 config E/F "
            "('skip') generator"
        )
    res, layer, var = int(m.group(1)), m.group(2), m.group(3)
    if layer == "Const":
        return f"synthesis.b{res}.const", tensor.reshape(tensor.shape[1:])
    key = f"synthesis.b{res}.{_LAYERS[layer]}"
    if var == "weight":
        if layer == "Conv0_up":
            tensor = tensor.flip([0, 1])
        return f"{key}.weight", tensor.permute(3, 2, 0, 1).contiguous()
    if var == "mod_weight":
        return f"{key}.affine.weight", tensor.t().contiguous()
    if var == "mod_bias":
        return f"{key}.affine.bias", tensor + 1
    if var in ("bias", "noise_strength"):
        return f"{key}.{var}", tensor.reshape(-1) if var == "bias" else tensor.reshape(())
    raise UnsupportedModelError(f"unexpected variable {name!r} in the TensorFlow generator")


def _hints(kwargs: Mapping[str, Any]) -> ConfigHints:
    kernel = kwargs.get("resample_kernel")
    return ConfigHints(
        resolution=kwargs.get("resolution"),
        z_dim=kwargs.get("latent_size"),
        w_dim=kwargs.get("dlatent_size"),
        c_dim=kwargs.get("label_size"),
        img_channels=kwargs.get("num_channels"),
        mapping_layers=kwargs.get("mapping_layers"),
        mapping_lr_multiplier=kwargs.get("mapping_lrmul"),
        conv_clamp=kwargs.get("conv_clamp"),
        architecture=kwargs.get("architecture"),
        resample_filter=tuple(float(t) for t in kernel) if kernel is not None else None,
    )


def read_tensorflow(obj: tuple, network: str = "ema") -> tuple[dict[str, torch.Tensor], ConfigHints]:
    """The canonical state dict and hints from a TF ``(G, D, Gs)`` pickle: of ``Gs`` (``network="ema"``)
    or of the training generator ``G`` (``"training"``)."""
    gs = obj[2] if network == "ema" else obj[0]
    components = gs.state.get("components") or {}
    if "mapping" not in components or "synthesis" not in components:
        raise UnknownCheckpointFormatError(
            f"the TensorFlow network {gs.state.get('name')!r} has no mapping and synthesis components"
        )
    state: dict[str, torch.Tensor] = {}
    for name, value in _variables(gs).items():
        converted = _convert(name, value)
        if converted is not None:
            state[converted[0]] = converted[1]
    kwargs = gs.state.get("static_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise CorruptCheckpointError("the TensorFlow generator's static_kwargs is not a dict")
    return state, _hints(kwargs)
