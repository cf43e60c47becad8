"""ONNX → :class:`GraphModule`, for the small operator set of image classifiers.

Weights are read with ``onnx.numpy_helper``; no ONNX runtime is involved. Supported operators:
Conv, Mul, Add, Relu, Sigmoid, Tanh, MaxPool, AveragePool, GlobalAveragePool, Pad (constant),
Flatten, Gemm, Softmax. Anything else raises a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import UnsupportedModelError
from ._graph import GraphModule, GraphNode

__all__ = ["convert_onnx"]

_ELEMENTWISE = {"Mul": "mul", "Add": "add", "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}


def _spatial_pads(pads: Sequence[int]) -> list[int]:
    """ONNX pads [h_begin, w_begin, h_end, w_end] → (top, bottom, left, right)."""
    if not pads:
        return [0, 0, 0, 0]
    h0, w0, h1, w1 = (int(p) for p in pads)
    return [h0, h1, w0, w1]


def convert_onnx(data: bytes, *, outputs: Sequence[str] | None = None) -> GraphModule:
    """Convert a serialized ONNX model.

    Args:
        data: the ``.onnx`` file's bytes.
        outputs: value names to return (default: the graph's outputs); intermediate values such
            as the logits before a final softmax can be asked for.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    constants = {init.name: torch.from_numpy(np.array(numpy_helper.to_array(init), copy=True)) for init in graph.initializer}
    nodes: list[GraphNode] = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op, inputs, output = node.op_type, [i for i in node.input if i], node.output[0]
        if op == "Conv":
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise UnsupportedModelError(f"ONNX Conv with auto_pad={attrs['auto_pad']!r} is not supported")
            nodes.append(GraphNode("conv2d", inputs, output, {
                "stride": list(attrs.get("strides", [1, 1])), "pads": _spatial_pads(attrs.get("pads", [])),
                "dilation": list(attrs.get("dilations", [1, 1])), "groups": int(attrs.get("group", 1))}))
        elif op in _ELEMENTWISE:
            nodes.append(GraphNode(_ELEMENTWISE[op], inputs, output))
        elif op in ("MaxPool", "AveragePool"):
            if attrs.get("ceil_mode", 0) or (op == "AveragePool" and attrs.get("count_include_pad", 0)):
                raise UnsupportedModelError(f"ONNX {op} with ceil_mode or count_include_pad is not supported")
            nodes.append(GraphNode("max_pool" if op == "MaxPool" else "avg_pool", inputs, output, {
                "kernel": list(attrs["kernel_shape"]), "stride": list(attrs.get("strides", [1, 1])),
                "pads": _spatial_pads(attrs.get("pads", []))}))
        elif op == "GlobalAveragePool":
            nodes.append(GraphNode("global_avg_pool", inputs, output))
        elif op == "Pad":
            mode = attrs.get("mode", b"constant")
            if mode not in (b"constant", "constant") or len(inputs) > 2 or inputs[1] not in constants:
                raise UnsupportedModelError("only constant ONNX Pad with constant pads and zero value is supported")
            pads = [int(p) for p in constants.pop(inputs[1]).tolist()]
            nodes.append(GraphNode("pad", inputs[:1], output, {"pads": pads}))
        elif op == "Flatten":
            nodes.append(GraphNode("flatten", inputs, output, {"axis": int(attrs.get("axis", 1))}))
        elif op == "Gemm":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise UnsupportedModelError("only ONNX Gemm with transA=0, alpha=1, beta=1 is supported")
            nodes.append(GraphNode("gemm", inputs, output, {"trans_b": bool(attrs.get("transB", 0))}))
        elif op == "Softmax":
            nodes.append(GraphNode("softmax", inputs, output, {"axis": int(attrs.get("axis", -1))}))
        else:
            raise UnsupportedModelError(f"ONNX operator {op!r} is not supported by cfexplain's converter")
    used = {v for node in nodes for v in node.inputs}
    constants = {k: v for k, v in constants.items() if k in used}
    graph_inputs = [i.name for i in graph.input if i.name not in constants]
    return GraphModule(nodes, constants, graph_inputs, list(outputs or [o.name for o in graph.output]))
