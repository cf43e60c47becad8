"""NVlabs StyleGAN3 pickles (``stylegan3-{t,r}-*.pkl``): the same snapshot dict and persistent
objects as StyleGAN2's (:mod:`.nvlabs`), a generator whose synthesis network has an ``input``
stage and ``L{i}_{size}_{channels}`` layers.

The configuration comes from the constructor kwargs (``_init_kwargs``) and StyleGAN3's defaults;
the layer names the pickle records must be the ones the paper's schedule gives for it, so a file
whose kwargs and layers disagree is refused instead of built wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import torch

from ...errors import CorruptCheckpointError, UnsupportedModelError
from ..stylegan3 import StyleGAN3Config, StyleGAN3Generator
from ._canonical import load_weights
from ._safe_pickle import PersistentObject
from .nvlabs import is_nvlabs, read_generator

__all__ = ["build_stylegan3", "is_nvlabs_stylegan3", "read_nvlabs_stylegan3"]


def _network(obj: Any) -> Any:
    return obj if isinstance(obj, PersistentObject) else obj.get("G_ema") or obj.get("G")


def is_nvlabs_stylegan3(obj: Any) -> bool:
    """Whether an unpickled NVlabs object holds a StyleGAN3 generator (a synthesis ``input`` stage)."""
    if not is_nvlabs(obj):
        return False
    network = _network(obj)
    modules = network.state.get("_modules") if isinstance(network, PersistentObject) else None
    synthesis = modules.get("synthesis") if isinstance(modules, Mapping) else None
    if not isinstance(synthesis, PersistentObject):
        return False
    children = synthesis.state.get("_modules")
    return isinstance(children, Mapping) and "input" in children


def read_nvlabs_stylegan3(obj: Any, network: str = "ema") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The generator's state dict (``network``: ``"ema"`` for ``G_ema``, ``"training"`` for ``G``),
    and its constructor kwargs and recorded layer names."""
    generator, state, kwargs = read_generator(obj, network)
    synthesis = generator.state["_modules"]["synthesis"]
    names = synthesis.state.get("layer_names")
    return state, {"kwargs": dict(kwargs), "layer_names": list(names) if isinstance(names, (list, tuple)) else None}


def build_stylegan3(state: MutableMapping[str, torch.Tensor], hints: Mapping[str, Any], *, provenance: dict[str, str],
                    device: torch.device | str = "cpu") -> StyleGAN3Generator:
    """A :class:`StyleGAN3Generator` from a StyleGAN3 pickle's state and hints.

    Raises:
        UnsupportedModelError: a conditional generator.
        CorruptCheckpointError: kwargs that do not give the recorded layers, or bad kwargs.
        ShapeError: weights that do not fit the configured network.
    """
    kwargs = hints["kwargs"]
    if int(kwargs.get("c_dim") or 0) > 0 or "mapping.embed.weight" in state:
        raise UnsupportedModelError("this is a conditional (class-label) StyleGAN3 generator; cfexplain supports "
                                    "unconditional generators only")
    try:
        config = StyleGAN3Config.from_kwargs(kwargs)
    except (TypeError, ValueError) as exc:
        raise CorruptCheckpointError(f"the StyleGAN3 constructor kwargs do not make a network: {exc}") from exc
    generator = StyleGAN3Generator(config)
    recorded = hints.get("layer_names")
    if recorded is not None and list(recorded) != generator.synthesis.layer_names:
        raise CorruptCheckpointError(f"the pickle's layers {recorded} are not the ones its kwargs give "
                                     f"{generator.synthesis.layer_names}")
    load_weights(generator, state, configuration=f"configuration from the kwargs: {config}")
    generator.provenance = provenance
    return generator.to(device)
