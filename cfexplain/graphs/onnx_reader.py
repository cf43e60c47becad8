"""ONNX → :class:`GraphModule`: the reader for exported image classifiers (and the zoo's nets).

The file is parsed with the ``onnx`` package (weights with ``onnx.numpy_helper``); no ONNX runtime
is involved in the conversion. Each node becomes one canonical operation of :mod:`.ops` with the
meaning the ONNX specification gives it at the model's opset; nodes whose inputs are all
constants are evaluated once here (``Constant`` nodes, weight reshapes). The shape chains that
exporters emit (``Shape → Gather → Unsqueeze → Concat → Reshape``) stay in the graph and run on
int64 tensors, so a converted graph takes any batch size its source does.

:data:`SUPPORTED_OPERATORS` lists what is read; a graph with anything else is refused with the
operators' names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointNotFoundError, CorruptCheckpointError, UnsupportedModelError
from .module import GraphModule, GraphNode
from .ops import OPS

__all__ = ["SUPPORTED_OPERATORS", "OnnxSignature", "convert_onnx", "load_onnx", "signature"]


def load_onnx(source: bytes | str | os.PathLike) -> Any:
    """The checked ``onnx.ModelProto`` of a file path (external weights next to it are read) or
    of a model's bytes.

    Raises:
        CheckpointNotFoundError: no file at the path.
        CorruptCheckpointError: not an ONNX model, or one that fails ``onnx.checker``.
    """
    import onnx

    where = "the ONNX bytes" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)) and not Path(source).is_file():
        raise CheckpointNotFoundError(f"no ONNX file at {source}")
    try:
        if isinstance(source, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(source))
        else:
            model = onnx.load(os.fspath(source))
    except Exception as exc:  # protobuf's DecodeError, or a missing external-data file
        raise CorruptCheckpointError(f"{where} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node or not model.graph.output:
        raise CorruptCheckpointError(f"{where} is not an ONNX model: it has no graph (nodes and outputs)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptCheckpointError(f"{where} is not a valid ONNX model: {message}") from exc
    return model


@dataclass(frozen=True)
class OnnxSignature:
    """What a graph takes and gives.

    Attributes:
        input: the name of its one input (initializers excepted).
        input_shape: the input's dimensions, ``None`` where dynamic.
        outputs: its output names.
        output_shapes: each output's dimensions, ``None`` where dynamic (an empty tuple if unknown).
        activations: per output, ``(op, input name)`` when the output is made by a final
            ``Softmax``/``LogSoftmax`` over its last axis or a ``Sigmoid``, else ``None``.
        opset: the default-domain opset.
    """

    input: str
    input_shape: tuple[int | None, ...]
    outputs: tuple[str, ...]
    output_shapes: tuple[tuple[int | None, ...], ...]
    activations: tuple[tuple[str, str] | None, ...]
    opset: int


def _dims(value_info: Any) -> tuple[int | None, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim)


def signature(model: Any) -> OnnxSignature:
    """The :class:`OnnxSignature` of a loaded model.

    Raises:
        UnsupportedModelError: the graph has no input or several.
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(repr(v.name) for v in inputs) or "none"
        raise UnsupportedModelError(f"the ONNX graph has {len(inputs)} inputs ({names}); a classifier takes one batch "
                                    f"of images")
    producers = {out: node for node in graph.node for out in node.output}
    activations: list[tuple[str, str] | None] = []
    for output in graph.output:
        node = producers.get(output.name)
        activation = None
        if node is not None and node.op_type in ("Softmax", "LogSoftmax", "Sigmoid"):
            axis = _attributes(node).get("axis", -1 if _opset(model) >= 13 else 1)
            rank = len(_dims(output))
            if node.op_type == "Sigmoid" or axis == -1 or (rank and axis == rank - 1):
                activation = (node.op_type, node.input[0])
        activations.append(activation)
    return OnnxSignature(inputs[0].name, _dims(inputs[0]), tuple(o.name for o in graph.output),
                         tuple(_dims(o) for o in graph.output), tuple(activations), _opset(model))


def convert_onnx(source: bytes | str | os.PathLike | Any, *, outputs: Sequence[str] | None = None) -> GraphModule:
    """Convert an ONNX model (a path, its bytes or a loaded ``ModelProto``).

    Args:
        source: the model.
        outputs: value names to return (default: the graph's outputs); intermediate values such
            as the logits before a final softmax can be asked for. Nodes no output needs are
            dropped.

    Raises:
        UnsupportedModelError: operators or attributes outside :data:`SUPPORTED_OPERATORS`, named.
        CorruptCheckpointError: not a valid ONNX model.
    """
    model = source if hasattr(source, "graph") else load_onnx(source)
    return _Converter(model).convert(outputs)


def _opset(model: Any) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _to_tensor(proto: Any) -> torch.Tensor:
    from onnx import numpy_helper

    array = numpy_helper.to_array(proto)
    if array.dtype.kind == "f" and array.dtype != np.float32 or str(array.dtype) == "bfloat16":
        array = array.astype(np.float32)  # every float runs as float32
    if array.dtype.kind not in "fiub":
        raise UnsupportedModelError(f"ONNX tensor {proto.name!r} of type {array.dtype} is not supported")
    return torch.from_numpy(np.array(array, copy=True))


class _Converter:
    """One ONNX graph on its way to a :class:`GraphModule`: the constants and nodes so far."""

    def __init__(self, model: Any) -> None:
        self.model, self.graph, self.opset = model, model.graph, _opset(model)
        self.constants: dict[str, torch.Tensor] = {init.name: _to_tensor(init) for init in self.graph.initializer}
        self.nodes: list[GraphNode] = []

    def convert(self, outputs: Sequence[str] | None) -> GraphModule:
        unknown = sorted({_name(node) for node in self.graph.node} - set(_HANDLERS))
        if unknown:
            raise UnsupportedModelError(f"the ONNX graph uses operators cfexplain cannot read: {', '.join(unknown)}. "
                                        f"Supported: {', '.join(SUPPORTED_OPERATORS)}")
        for node in self.graph.node:
            _HANDLERS[_name(node)](self, node, _attributes(node))
        wanted = list(outputs or [o.name for o in self.graph.output])
        nodes = _needed(self.nodes, wanted)
        used = {v for node in nodes for v in node.inputs} | set(wanted)
        constants = {name: value for name, value in self.constants.items() if name in used}
        initializers = {init.name for init in self.graph.initializer}
        graph_inputs = [i.name for i in self.graph.input if i.name not in initializers]
        return GraphModule(nodes, constants, graph_inputs, wanted)

    # ------------------------------------------------------------------ helpers for the handlers

    def emit(self, op: str, inputs: Sequence[str], output: str, attrs: dict[str, Any] | None = None) -> None:
        """Add ``output = OPS[op](*inputs, **attrs)``; evaluated now if every input is a constant."""
        attrs = attrs or {}
        if all(name in self.constants for name in inputs):
            with torch.no_grad():
                self.constants[output] = OPS[op](*(self.constants[name] for name in inputs), **attrs)
        else:
            self.nodes.append(GraphNode(op, list(inputs), output, attrs))

    def constant(self, node: Any, index: int, what: str) -> torch.Tensor | None:
        """The constant value of the node's ``index``-th input (``None`` if absent)."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.constants:
            raise UnsupportedModelError(f"ONNX {node.op_type} node {node.name or name!r}: a computed {what} is not "
                                        f"supported (only a constant one)")
        return self.constants[name]

    def ints(self, node: Any, index: int, what: str) -> list[int] | None:
        value = self.constant(node, index, what)
        return None if value is None else [int(v) for v in value.reshape(-1).tolist()]


def _name(node: Any) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def _needed(nodes: Sequence[GraphNode], outputs: Sequence[str]) -> list[GraphNode]:
    """The nodes that some output depends on, in order."""
    wanted, kept = set(outputs), []
    for node in reversed(nodes):
        if node.output in wanted:
            kept.append(node)
            wanted.update(node.inputs)
    return kept[::-1]


def _refuse(node: Any, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"ONNX {node.op_type} node {node.name or node.output[0]!r}: {why}")


def _spatial(node: Any, attrs: dict[str, Any], name: str, default: int) -> list[int]:
    values = [int(v) for v in attrs.get(name, [default, default])]
    if len(values) != 2:
        raise _refuse(node, f"only 2-D images are supported ({name} = {values})")
    return values


def _pads(node: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """``pads`` as (top, bottom, left, right), or ``auto_pad`` for SAME padding."""
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return {"auto_pad": auto_pad}
    if auto_pad not in ("NOTSET", "VALID"):
        raise _refuse(node, f"auto_pad={auto_pad!r} is not supported")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])] if auto_pad == "NOTSET" else [0, 0, 0, 0]
    if len(pads) != 4:
        raise _refuse(node, f"only 2-D images are supported (pads = {pads})")
    return {"pads": [pads[0], pads[2], pads[1], pads[3]]}


def _inputs(node: Any, count: int | None = None) -> list[str]:
    names = list(node.input)[:count] if count else list(node.input)
    while names and not names[-1]:
        names.pop()
    return names


Handler = Callable[[_Converter, Any, dict[str, Any]], None]


def _conv(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    strides, dilations = _spatial(node, attrs, "strides", 1), _spatial(node, attrs, "dilations", 1)
    c.emit("conv2d", _inputs(node, 3), node.output[0],
           {"stride": strides, "dilation": dilations, "groups": int(attrs.get("group", 1)), **_pads(node, attrs)})


def _conv_transpose(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if "output_shape" in attrs or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise _refuse(node, "output_shape and SAME auto_pad are not supported (give pads)")
    c.emit("conv_transpose2d", _inputs(node, 3), node.output[0], {
        "stride": _spatial(node, attrs, "strides", 1), "dilation": _spatial(node, attrs, "dilations", 1),
        "groups": int(attrs.get("group", 1)), "output_padding": _spatial(node, attrs, "output_padding", 0),
        **_pads(node, attrs)})


def _batch_norm(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if attrs.get("training_mode", 0) or any(node.output[1:]):
        raise _refuse(node, "training-mode batch normalisation is not supported (export the model in eval mode)")
    c.emit("batch_norm", _inputs(node, 5), node.output[0], {"epsilon": float(attrs.get("epsilon", 1e-5))})


def _same(op: str) -> Handler:
    def handler(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
        c.emit(op, _inputs(node), node.output[0])
    return handler


def _elu(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("elu", _inputs(node, 1), node.output[0], {"alpha": float(attrs.get("alpha", 1.0))})


def _selu(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("selu", _inputs(node, 1), node.output[0], {"alpha": float(attrs.get("alpha", 1.6732632423543772)),
                                                       "gamma": float(attrs.get("gamma", 1.0507009873554805))})


def _gelu(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("gelu", _inputs(node, 1), node.output[0], {"approximate": attrs.get("approximate", "none")})


def _layer_norm(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if any(node.output[1:]) or attrs.get("stash_type", 1) != 1:
        raise _refuse(node, "the mean and inverse-deviation outputs and stash types other than float are not supported")
    c.emit("layer_norm", _inputs(node, 3), node.output[0],
           {"axis": int(attrs.get("axis", -1)), "epsilon": float(attrs.get("epsilon", 1e-5))})


def _instance_norm(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("instance_norm", _inputs(node, 3), node.output[0], {"epsilon": float(attrs.get("epsilon", 1e-5))})


def _leaky_relu(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("leaky_relu", _inputs(node, 1), node.output[0], {"alpha": float(attrs.get("alpha", 0.01))})


def _clip(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if c.opset < 11:
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low_value, high_value = c.constant(node, 1, "minimum"), c.constant(node, 2, "maximum")
        low = None if low_value is None else float(low_value)
        high = None if high_value is None else float(high_value)
    c.emit("clip", _inputs(node, 1), node.output[0], {"low": low, "high": high})


def _hard_sigmoid(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("hard_sigmoid", _inputs(node, 1), node.output[0],
           {"alpha": float(attrs.get("alpha", 0.2)), "beta": float(attrs.get("beta", 0.5))})


def _softmax(log: bool) -> Handler:
    def handler(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
        flatten = c.opset < 13
        c.emit("softmax", _inputs(node, 1), node.output[0],
               {"axis": int(attrs.get("axis", 1 if flatten else -1)), "flatten": flatten, "log": log})
    return handler


def _max_pool(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if any(node.output[1:]):
        raise _refuse(node, "the indices output is not supported")
    kernel = _spatial(node, attrs, "kernel_shape", 1)
    c.emit("max_pool", _inputs(node, 1), node.output[0], {
        "kernel": kernel, "stride": _spatial(node, attrs, "strides", 1), "dilation": _spatial(node, attrs, "dilations", 1),
        "ceil_mode": bool(attrs.get("ceil_mode", 0)), **_pads(node, attrs)})


def _average_pool(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if _spatial(node, attrs, "dilations", 1) != [1, 1]:
        raise _refuse(node, "dilated average pooling is not supported")
    c.emit("avg_pool", _inputs(node, 1), node.output[0], {
        "kernel": _spatial(node, attrs, "kernel_shape", 1), "stride": _spatial(node, attrs, "strides", 1),
        "ceil_mode": bool(attrs.get("ceil_mode", 0)), "count_include_pad": bool(attrs.get("count_include_pad", 0)),
        **_pads(node, attrs)})


def _gemm(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("gemm", _inputs(node, 3), node.output[0], {
        "trans_a": bool(attrs.get("transA", 0)), "trans_b": bool(attrs.get("transB", 0)),
        "alpha": float(attrs.get("alpha", 1.0)), "beta": float(attrs.get("beta", 1.0))})


def _concat(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("concat", [name for name in node.input if name], node.output[0], {"axis": int(attrs["axis"])})


def _flatten(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("flatten2d", _inputs(node, 1), node.output[0], {"axis": int(attrs.get("axis", 1))})


def _reshape(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("reshape_to", _inputs(node, 2), node.output[0], {"allowzero": bool(attrs.get("allowzero", 0))})


def _transpose(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if "perm" not in attrs:
        raise _refuse(node, "a Transpose without perm is not supported")
    c.emit("permute", _inputs(node, 1), node.output[0], {"dims": [int(p) for p in attrs["perm"]]})


def _axes(c: _Converter, node: Any, attrs: dict[str, Any], since: int) -> list[int] | None:
    """Axes from the attribute (before opset ``since``) or the constant second input."""
    if c.opset < since:
        return None if "axes" not in attrs else [int(a) for a in attrs["axes"]]
    return c.ints(node, 1, "axes")


def _squeeze(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("squeeze", _inputs(node, 1), node.output[0], {"axes": _axes(c, node, attrs, 13)})


def _unsqueeze(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    axes = _axes(c, node, attrs, 13)
    if not axes:
        raise _refuse(node, "Unsqueeze needs its axes")
    c.emit("unsqueeze", _inputs(node, 1), node.output[0], {"axes": axes})


def _pad(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise _refuse(node, f"mode {mode!r} is not supported (constant, reflect, edge)")
    if c.opset < 11:
        pads, value = [int(p) for p in attrs["pads"]], float(attrs.get("value", 0.0))
    else:
        if len(node.input) > 3 and node.input[3]:
            raise _refuse(node, "the axes input is not supported")
        pads = c.ints(node, 1, "pads")
        fill = c.constant(node, 2, "constant_value")
        value = 0.0 if fill is None or fill.numel() == 0 else float(fill.reshape(-1)[0])
    c.emit("pad", _inputs(node, 1), node.output[0], {"pads": pads, "mode": mode, "value": value})


def _resize_attrs(node: Any, attrs: dict[str, Any], default_coordinates: str) -> dict[str, Any]:
    mode = attrs.get("mode", "nearest")
    coordinates = attrs.get("coordinate_transformation_mode", default_coordinates)
    if mode not in ("nearest", "linear"):
        raise _refuse(node, f"mode {mode!r} is not supported (nearest, linear)")
    if coordinates == "tf_crop_and_resize" or attrs.get("exclude_outside", 0) or attrs.get("antialias", 0):
        raise _refuse(node, "tf_crop_and_resize, exclude_outside and antialias are not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" or "axes" in attrs:
        raise _refuse(node, "keep_aspect_ratio_policy and axes are not supported")
    return {"mode": mode, "coordinates": coordinates, "nearest_mode": attrs.get("nearest_mode", "round_prefer_floor")}


def _scales(node: Any, scales: torch.Tensor) -> list[float]:
    values = [float(s) for s in scales.reshape(-1).tolist()]
    if len(values) != 4 or values[:2] != [1.0, 1.0]:
        raise _refuse(node, f"only spatial resizing of NCHW images is supported (scales {values})")
    return values


def _resize(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if c.opset < 11:  # Resize-10: X, scales; asymmetric coordinates
        settings = _resize_attrs(node, attrs, "asymmetric")
        settings["nearest_mode"] = attrs.get("nearest_mode", "floor")
        scales = c.constant(node, 1, "scales")
    else:
        settings = _resize_attrs(node, attrs, "half_pixel")
        scales = c.constant(node, 2, "scales")
    sizes = node.input[3] if len(node.input) > 3 and node.input[3] else None
    if sizes is not None:
        c.emit("resize", [node.input[0], sizes], node.output[0], settings)
    elif scales is not None and scales.numel():
        c.emit("resize", [node.input[0]], node.output[0], {**settings, "scales": _scales(node, scales)})
    else:
        raise _refuse(node, "neither scales nor sizes are given")


def _upsample(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    scales = torch.tensor(attrs["scales"]) if "scales" in attrs else c.constant(node, 1, "scales")
    settings = _resize_attrs(node, {"mode": attrs.get("mode", "nearest")}, "asymmetric")
    settings["nearest_mode"] = "floor"
    c.emit("resize", _inputs(node, 1), node.output[0], {**settings, "scales": _scales(node, scales)})


def _reduce(op: str, since: int) -> Handler:
    def handler(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
        axes = _axes(c, node, attrs, since)
        if not axes and attrs.get("noop_with_empty_axes", 0):
            c.emit("identity", _inputs(node, 1), node.output[0])
            return
        c.emit(op, _inputs(node, 1), node.output[0], {"axes": axes or None, "keepdims": bool(attrs.get("keepdims", 1))})
    return handler


def _shape(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("shape", _inputs(node, 1), node.output[0], {"start": int(attrs.get("start", 0)), "end": attrs.get("end")})


def _gather(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("gather", _inputs(node, 2), node.output[0], {"axis": int(attrs.get("axis", 0))})


_CAST_TYPES = {1: "float", 10: "float", 11: "float", 16: "float", 2: "uint8", 3: "int8", 6: "int32", 7: "int64",
               9: "bool"}


def _cast(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    to = _CAST_TYPES.get(int(attrs["to"]))
    if to is None:
        raise _refuse(node, f"casting to ONNX type {attrs['to']} is not supported")
    c.emit("cast", _inputs(node, 1), node.output[0], {"to": to})


def _slice(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if c.opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = c.ints(node, 1, "starts"), c.ints(node, 2, "ends")
        axes, steps = c.ints(node, 3, "axes"), c.ints(node, 4, "steps")
    c.emit("slice", _inputs(node, 1), node.output[0], {
        "starts": [int(v) for v in starts], "ends": [int(v) for v in ends],
        "axes": None if axes is None else [int(v) for v in axes], "steps": steps})


def _constant_of_shape(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    value = _to_tensor(attrs["value"]) if "value" in attrs else torch.zeros(1)
    c.emit("constant_of_shape", _inputs(node, 1), node.output[0],
           {"value": value.reshape(-1)[0].item(), "dtype": str(value.dtype).removeprefix("torch.")})


def _constant(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    if "value" in attrs:
        value = _to_tensor(attrs["value"])
    elif "value_float" in attrs or "value_floats" in attrs:
        value = torch.tensor(attrs.get("value_float", attrs.get("value_floats")), dtype=torch.float32)
    elif "value_int" in attrs or "value_ints" in attrs:
        value = torch.tensor(attrs.get("value_int", attrs.get("value_ints")), dtype=torch.int64)
    else:
        raise _refuse(node, f"constant attributes {sorted(attrs)} are not supported")
    c.constants[node.output[0]] = value


def _identity(c: _Converter, node: Any, attrs: dict[str, Any]) -> None:
    c.emit("identity", _inputs(node, 1), node.output[0])  # Dropout too: inference ignores it


_HANDLERS: dict[str, Handler] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "BatchNormalization": _batch_norm,
    "Relu": _same("relu"), "Sigmoid": _same("sigmoid"), "Tanh": _same("tanh"), "LeakyRelu": _leaky_relu,
    "PRelu": _same("prelu_broadcast"), "Clip": _clip, "HardSigmoid": _hard_sigmoid, "HardSwish": _same("hard_swish"),
    "Softmax": _softmax(log=False), "LogSoftmax": _softmax(log=True),
    "MaxPool": _max_pool, "AveragePool": _average_pool,
    "GlobalAveragePool": _same("global_avg_pool"), "GlobalMaxPool": _same("global_max_pool"),
    "Gemm": _gemm, "MatMul": _same("matmul"),
    "Add": _same("add"), "Sub": _same("sub"), "Mul": _same("mul"), "Div": _same("div"), "Pow": _same("pow"),
    "Sqrt": _same("sqrt"), "Exp": _same("exp"), "Neg": _same("neg"), "Erf": _same("erf"),
    "Concat": _concat, "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Pad": _pad, "Resize": _resize, "Upsample": _upsample,
    "ReduceMean": _reduce("reduce_mean", 18), "ReduceSum": _reduce("reduce_sum", 13),
    "ReduceMax": _reduce("reduce_max", 18),
    "Shape": _shape, "Gather": _gather, "Cast": _cast, "Slice": _slice, "ConstantOfShape": _constant_of_shape,
    "Expand": _same("expand"), "Constant": _constant, "Identity": _identity, "Dropout": _identity,
    "Abs": _same("abs"), "Log": _same("log"), "Reciprocal": _same("reciprocal"), "Max": _same("maximum"),
    "Min": _same("minimum"), "Sum": _same("sum"), "Mean": _same("mean"), "Where": _same("where"),
    "Equal": _same("equal"), "Greater": _same("greater"), "Less": _same("less"), "Elu": _elu, "Selu": _selu,
    "Softplus": _same("softplus"), "Gelu": _gelu, "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
}

SUPPORTED_OPERATORS: tuple[str, ...] = tuple(sorted(_HANDLERS))
"""The ONNX operators (default domain) the reader converts."""
