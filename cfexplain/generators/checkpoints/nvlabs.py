"""NVlabs stylegan2-ada-pytorch / stylegan3 pickles (StyleGAN2 networks).

The file is a plain pickle of a dict ``{G, D, G_ema, augment_pipe, training_set_kwargs}`` whose
networks are NVIDIA persistent objects; :mod:`._safe_pickle` turns each into a
:class:`PersistentObject` (class name + module state). The generator's state dict is the module
tree flattened: own parameters, own persistent buffers, then each child, names joined with ``.``.
Its keys are already cfexplain's canonical layout; the constructor kwargs (``_init_kwargs``)
become configuration hints.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ...errors import CorruptCheckpointError, InputError, UnknownCheckpointFormatError
from ._canonical import ConfigHints
from ._safe_pickle import PersistentObject

__all__ = ["is_nvlabs", "read_generator", "read_nvlabs"]


def is_nvlabs(obj: Any) -> bool:
    """Whether an unpickled object is an NVlabs snapshot dict or a bare generator."""
    if isinstance(obj, PersistentObject):
        return True
    return isinstance(obj, dict) and any(isinstance(obj.get(k), PersistentObject) for k in ("G_ema", "G"))


def _select_generator(obj: Any, network: str) -> PersistentObject:
    if isinstance(obj, PersistentObject):
        if network == "training":
            raise InputError("the pickle is a bare generator, not a snapshot with G and G_ema: it has no separate "
                             "training generator (network='training')")
        chosen = obj
    elif network == "training":
        if not isinstance(obj.get("G"), PersistentObject):
            raise InputError("the pickle has no training generator G (network='training'); its networks: "
                             f"{sorted(k for k, v in obj.items() if isinstance(v, PersistentObject))}")
        chosen = obj["G"]
    elif isinstance(obj.get("G_ema"), PersistentObject):
        chosen = obj["G_ema"]
    else:
        warnings.warn("the pickle has no G_ema; using the training generator G", stacklevel=4)
        chosen = obj["G"]
    if chosen.class_name != "Generator":
        raise UnknownCheckpointFormatError(
            f"the pickle's generator is a {chosen.class_name!r}, expected an NVlabs 'Generator'"
        )
    return chosen


def _flatten(obj: PersistentObject, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = obj.state
    try:
        params, buffers, children = state["_parameters"], state["_buffers"], state["_modules"]
    except KeyError as exc:
        raise CorruptCheckpointError(f"module {prefix or obj.class_name!r} has no {exc.args[0]} in its state") from None
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for name, tensor in list(params.items()) + [(n, t) for n, t in buffers.items() if n not in non_persistent]:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise CorruptCheckpointError(f"{prefix}{name} is a {type(tensor).__name__}, expected a tensor")
        out[prefix + name] = tensor
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CorruptCheckpointError(f"submodule {prefix}{name} is a {type(child).__name__}, expected a network module")
        _flatten(child, f"{prefix}{name}.", out)


def _hints(kwargs: Mapping[str, Any]) -> ConfigHints:
    mapping = kwargs.get("mapping_kwargs") or {}
    # stylegan2-ada-pytorch nests synthesis kwargs; stylegan3's StyleGAN2 generator flattens them.
    synthesis = {**kwargs, **(kwargs.get("synthesis_kwargs") or {})}
    filt = synthesis.get("resample_filter")
    return ConfigHints(
        resolution=kwargs.get("img_resolution"),
        z_dim=kwargs.get("z_dim"),
        w_dim=kwargs.get("w_dim"),
        c_dim=kwargs.get("c_dim"),
        img_channels=kwargs.get("img_channels"),
        mapping_layers=mapping.get("num_layers"),
        mapping_lr_multiplier=mapping.get("lr_multiplier"),
        conv_clamp=synthesis.get("conv_clamp"),
        architecture=synthesis.get("architecture"),
        resample_filter=tuple(float(t) for t in filt) if filt is not None else None,
    )


def read_generator(obj: Any, network: str = "ema") -> tuple[PersistentObject, dict[str, torch.Tensor], Mapping[str, Any]]:
    """An NVlabs pickle's generator (``network="ema"``: ``G_ema``, or ``G`` when it is missing;
    ``"training"``: ``G``), its flattened state dict and its constructor kwargs: what the readers
    of every NVlabs family start from."""
    generator = _select_generator(obj, network)
    state: dict[str, torch.Tensor] = {}
    _flatten(generator, "", state)
    kwargs = generator.state.get("_init_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise CorruptCheckpointError(f"the generator's _init_kwargs is a {type(kwargs).__name__}, expected a dict")
    return generator, state, kwargs


def read_nvlabs(obj: Any, network: str = "ema") -> tuple[dict[str, torch.Tensor], ConfigHints]:
    """The generator's canonical state dict and configuration hints from an NVlabs pickle."""
    _, state, kwargs = read_generator(obj, network)
    return state, _hints(kwargs)
