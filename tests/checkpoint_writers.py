"""Test helpers: write a StyleGAN2Generator's weights in the NVlabs, TensorFlow and rosinality
file layouts, so the loaders can be tested on configurations other than the golden fixtures.

The NVlabs and TF pickles are written with throw-away stand-ins registered in ``sys.modules`` under
the names real files use (``torch_utils.persistence``, ``dnnlib.util``, ``dnnlib.tflib.network``);
they are removed again before any loading happens, so a test proves the loader needs none of them.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from cfexplain.generators.stylegan2 import StyleGAN2Generator

FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "dnnlib.tflib", "dnnlib.tflib.network")
PLACEHOLDER_SOURCE = "# source removed\n"


def _reconstruct_persistent_obj(meta):  # stand-in; never called by the code under test
    raise AssertionError("the NVIDIA persistence hook must never be called")


class EasyDict(dict):
    pass


class Network:
    def __init__(self, state: dict) -> None:
        self._state = state

    def __getstate__(self) -> dict:
        return self._state


@contextlib.contextmanager
def fake_nvidia_modules():
    """Register stand-in modules under NVIDIA's names while a pickle is written."""
    modules = {name: types.ModuleType(name) for name in FAKE_MODULES}
    for func_or_cls, module, name in (
        (_reconstruct_persistent_obj, "torch_utils.persistence", "_reconstruct_persistent_obj"),
        (EasyDict, "dnnlib.util", "EasyDict"),
        (Network, "dnnlib.tflib.network", "Network"),
    ):
        func_or_cls.__module__ = module
        func_or_cls.__qualname__ = name
        setattr(modules[module], name, func_or_cls)
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in FAKE_MODULES:
            sys.modules.pop(name, None)


class Persistent:
    """Pickles the way an NVlabs persistent-class instance does."""

    def __init__(self, class_name: str, state: dict, module_src: str = PLACEHOLDER_SOURCE) -> None:
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return _reconstruct_persistent_obj, (meta,)


_BUFFERS = ("w_avg", "noise_const", "resample_filter")


def _class_name(path: tuple[str, ...]) -> str:
    last = path[-1] if path else ""
    if not path:
        return "Generator"
    if last == "mapping":
        return "MappingNetwork"
    if last == "synthesis":
        return "SynthesisNetwork"
    if last.startswith("fc") or last == "affine":
        return "FullyConnectedLayer"
    if last.startswith("b") and last[1:].isdigit():
        return "SynthesisBlock"
    return "ToRGBLayer" if last == "torgb" else "SynthesisLayer"


def nvlabs_state_tree(generator: StyleGAN2Generator, *, init_kwargs: dict, module_src: str = PLACEHOLDER_SOURCE,
                      extra_kwargs: dict | None = None) -> Persistent:
    """The generator as a tree of NVlabs persistent objects."""
    nodes: dict[tuple[str, ...], dict] = {}

    def node(path: tuple[str, ...]) -> dict:
        if path not in nodes:
            nodes[path] = {"training": False, "_parameters": OrderedDict(), "_buffers": OrderedDict(),
                           "_non_persistent_buffers_set": set(), "_modules": OrderedDict(),
                           "_forward_hooks": OrderedDict(), "_init_args": (), "_init_kwargs": EasyDict()}
            if _class_name(path) in ("SynthesisBlock", "SynthesisLayer"):
                nodes[path]["_buffers"]["resample_filter"] = kernel.clone()
            if path:
                parent = node(path[:-1])
                parent["_modules"][path[-1]] = None  # placeholder keeps order
        return nodes[path]

    kernel = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    for key, tensor in generator.state_dict().items():
        *path, leaf = key.split(".")
        entry = node(tuple(path))
        if leaf in _BUFFERS:
            entry["_buffers"][leaf] = tensor.clone()
        else:
            entry["_parameters"][leaf] = torch.nn.Parameter(tensor.clone(), requires_grad=False)
        if leaf == "weight" and _class_name(tuple(path)) == "FullyConnectedLayer":
            entry["weight_gain"] = np.float64(1.0 / math.sqrt(tensor.shape[-1]))
    root = node(())
    root["_init_kwargs"] = EasyDict(init_kwargs)
    root.update(extra_kwargs or {})

    def build(path: tuple[str, ...]) -> Persistent:
        state = nodes[path]
        for name in state["_modules"]:
            state["_modules"][name] = build(path + (name,))
        return Persistent(_class_name(path), state, module_src)

    return build(())


def nvlabs_init_kwargs(generator: StyleGAN2Generator, **synthesis_kwargs) -> dict:
    c = generator.config
    return {"z_dim": c.z_dim, "w_dim": c.w_dim, "mapping_kwargs": EasyDict(num_layers=c.mapping_layers),
            "synthesis_kwargs": EasyDict(synthesis_kwargs), "c_dim": 0, "img_resolution": c.resolution,
            "img_channels": c.img_channels}


def write_nvlabs_pickle(generator: StyleGAN2Generator, path: Path, *, module_src: str = PLACEHOLDER_SOURCE,
                        init_kwargs: dict | None = None, extra_state: dict | None = None, top_level_extra=None,
                        protocol: int = 4) -> Path:
    with fake_nvidia_modules():
        kwargs = init_kwargs if init_kwargs is not None else nvlabs_init_kwargs(generator, conv_clamp=None)
        g_ema = nvlabs_state_tree(generator, init_kwargs=kwargs, module_src=module_src, extra_kwargs=extra_state)
        snapshot = {"training_set_kwargs": {"resolution": generator.resolution}, "G": g_ema, "D": None,
                    "G_ema": g_ema, "augment_pipe": None}
        if top_level_extra is not None:
            snapshot["extra"] = top_level_extra
        with open(path, "wb") as f:
            pickle.dump(snapshot, f, protocol=protocol)
    return path


def _tf_layer_variables(prefix: str, state: dict, key: str, flip: bool) -> list:
    out = []
    weight = state[f"{key}.weight"].permute(2, 3, 1, 0)
    if flip:
        weight = weight.flip([0, 1])
    out.append((f"{prefix}/weight", weight.numpy().copy()))
    out.append((f"{prefix}/mod_weight", state[f"{key}.affine.weight"].t().numpy().copy()))
    out.append((f"{prefix}/mod_bias", (state[f"{key}.affine.bias"] - 1).numpy()))
    if f"{key}.noise_strength" in state:
        out.append((f"{prefix}/noise_strength", np.float32(state[f"{key}.noise_strength"].item())))
    out.append((f"{prefix}/bias", state[f"{key}.bias"].numpy().copy()))
    return out


def write_tf_pickle(generator: StyleGAN2Generator, path: Path, *, version: int = 4, protocol: int = 4,
                    static_kwargs: dict | None = None) -> Path:
    c = generator.config
    state = {k: v.detach().float() for k, v in generator.state_dict().items()}
    mapping_vars = []
    for i in range(c.mapping_layers):
        mapping_vars.append((f"Dense{i}/weight", state[f"mapping.fc{i}.weight"].t().numpy().copy()))
        mapping_vars.append((f"Dense{i}/bias", state[f"mapping.fc{i}.bias"].numpy().copy()))
    synth_vars = []
    layers = [layer.name for layer in generator.style_layout if not layer.is_torgb]
    for n, name in enumerate(layers):
        noise = state[f"synthesis.{name}.noise_const"]
        synth_vars.append((f"noise{n}", noise[None, None].numpy().copy()))
    synth_vars.append(("4x4/Const/const", state["synthesis.b4.const"][None].numpy().copy()))
    for res in c.block_resolutions:
        tag = f"{res}x{res}"
        if res == 4:
            synth_vars += _tf_layer_variables(f"{tag}/Conv", state, "synthesis.b4.conv1", False)
        else:
            synth_vars += _tf_layer_variables(f"{tag}/Conv0_up", state, f"synthesis.b{res}.conv0", True)
            synth_vars += _tf_layer_variables(f"{tag}/Conv1", state, f"synthesis.b{res}.conv1", False)
        synth_vars += _tf_layer_variables(f"{tag}/ToRGB", state, f"synthesis.b{res}.torgb", False)
    kwargs = static_kwargs if static_kwargs is not None else {
        "num_channels": c.img_channels, "resolution": c.resolution, "label_size": 0,
        "latent_size": c.z_dim, "dlatent_size": c.w_dim, "mapping_layers": c.mapping_layers}
    own = ([("lod", np.float32(0.0))] if version == 4 else []) + [("dlatent_avg", state["mapping.w_avg"].numpy().copy())]

    def network(name, variables, components, build_func):
        net_state = {"version": version, "name": name, "static_kwargs": dict(kwargs), "components": components,
                     "build_module_src": PLACEHOLDER_SOURCE, "build_func_name": build_func, "variables": variables}
        if version >= 5:
            net_state.update(input_shapes=[[None, c.z_dim], [None, 0]], output_shapes=[[None, 3, c.resolution, c.resolution]],
                             input_names=["latents_in", "labels_in"], output_names=["images_out"])
        return Network(net_state)

    with fake_nvidia_modules():
        def generator_network(name):
            components = {"synthesis": network("G_synthesis", synth_vars, {}, "G_synthesis"),
                          "mapping": network("G_mapping", mapping_vars, {}, "G_mapping")}
            return network(name, own, components, "G_main")

        networks = (generator_network("G"), network("D", [], {}, "D_main"), generator_network("Gs"))
        with open(path, "wb") as f:
            pickle.dump(networks, f, protocol=protocol)
    return path


def rosinality_state(generator: StyleGAN2Generator) -> dict[str, torch.Tensor]:
    c = generator.config
    state = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(c.mapping_layers):
        out[f"style.{i + 1}.weight"] = state[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = state[f"mapping.fc{i}.bias"]
    out["input.input"] = state["synthesis.b4.const"][None]
    kernel = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 16

    def conv(dst: str, src: str, up: bool) -> None:
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"][None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = kernel.clone()
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = state[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = state[f"{src}.bias"]

    def torgb(dst: str, src: str, upsample: bool) -> None:
        out[f"{dst}.bias"] = state[f"{src}.bias"].reshape(1, -1, 1, 1)
        if upsample:
            out[f"{dst}.upsample.kernel"] = kernel.clone()
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]

    conv("conv1", "synthesis.b4.conv1", False)
    torgb("to_rgb1", "synthesis.b4.torgb", False)
    for i, res in enumerate(c.block_resolutions[1:], start=1):
        conv(f"convs.{2 * i - 2}", f"synthesis.b{res}.conv0", True)
        conv(f"convs.{2 * i - 1}", f"synthesis.b{res}.conv1", False)
        torgb(f"to_rgbs.{i - 1}", f"synthesis.b{res}.torgb", True)
    layers = [layer.name for layer in generator.style_layout if not layer.is_torgb]
    for n, name in enumerate(layers):
        out[f"noises.noise_{n}"] = state[f"synthesis.{name}.noise_const"][None, None]
    return out
