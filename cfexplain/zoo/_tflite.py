"""TFLite (float32) → :class:`GraphModule`, for MediaPipe-style convolutional models.

The flatbuffer is parsed with the ``tflite`` package. TFLite tensors are NHWC; the converted graph
runs NCHW: convolution kernels are transposed (``OHWI → OIHW``, depthwise ``1HWO → O1HW``), PReLU
slopes and PAD amounts are re-ordered, and TensorFlow's ``SAME`` padding becomes explicit
(possibly asymmetric) padding from the static shapes. Supported operators: CONV_2D,
DEPTHWISE_CONV_2D, PRELU, ADD, MUL, MAX_POOL_2D, AVERAGE_POOL_2D, PAD, RELU, RELU6, and the
fused activations NONE, RELU, RELU6, TANH. Anything else raises a clear error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import CorruptCheckpointError, UnsupportedModelError
from ._graph import GraphModule, GraphNode

__all__ = ["convert_tflite"]


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) for one spatial dimension."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def convert_tflite(data: bytes) -> GraphModule:
    """Convert a float32 ``.tflite`` model (first subgraph) to a :class:`GraphModule`.

    Inputs and outputs keep their TFLite names; values are NCHW (an NHWC output ``[1, 1, 1, K]``
    becomes ``[1, K, 1, 1]``, whose flattening is the same).
    """
    import tflite

    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
    except Exception as exc:  # the flatbuffer library raises assorted errors on bad data
        raise CorruptCheckpointError(f"not a readable TFLite model: {exc}") from exc
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    tensor_types = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
    activations = {tflite.ActivationFunctionType.NONE: None, tflite.ActivationFunctionType.RELU: "relu",
                   tflite.ActivationFunctionType.RELU6: "relu6", tflite.ActivationFunctionType.TANH: "tanh"}

    def name(index: int) -> str:
        return graph.Tensors(index).Name().decode()

    def shape(index: int) -> list[int]:
        return [int(v) for v in graph.Tensors(index).ShapeAsNumpy()]

    def constant(index: int) -> np.ndarray | None:
        tensor = graph.Tensors(index)
        buffer = model.Buffers(tensor.Buffer())
        if buffer.DataLength() == 0:
            return None
        if tensor_types.get(tensor.Type()) not in ("FLOAT32", "INT32"):
            raise UnsupportedModelError(
                f"TFLite tensor {name(index)!r} has type {tensor_types.get(tensor.Type())}; only float32 models are supported"
            )
        dtype = np.float32 if tensor_types[tensor.Type()] == "FLOAT32" else np.int32
        return np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape(index)).copy()

    constants: dict[str, torch.Tensor] = {}
    nodes: list[GraphNode] = []

    def add_constant(key: str, array: np.ndarray) -> str:
        constants[key] = torch.from_numpy(np.ascontiguousarray(array))
        return key

    def fused(output: str, code: int) -> None:
        if code not in activations:
            raise UnsupportedModelError(f"TFLite fused activation {code} is not supported")
        act = activations[code]
        if act is not None:
            nodes[-1].output = output + ":pre_activation"
            nodes.append(GraphNode(act, [output + ":pre_activation"], output))

    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        inputs = [int(t) for t in op.InputsAsNumpy()]
        out = int(op.OutputsAsNumpy()[0])
        options = op.BuiltinOptions()
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opt = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            opt.Init(options.Bytes, options.Pos)
            kernel = constant(inputs[1])
            if kernel is None:
                raise UnsupportedModelError(f"TFLite {kind} {name(out)!r} has a non-constant kernel")
            stride, dilation = [opt.StrideH(), opt.StrideW()], [opt.DilationHFactor(), opt.DilationWFactor()]
            in_shape = shape(inputs[0])
            if kind == "CONV_2D":
                weight, groups = kernel.transpose(0, 3, 1, 2), 1
            else:
                weight, groups = kernel.transpose(3, 0, 1, 2), in_shape[3]
            pads = [0, 0, 0, 0]
            if opt.Padding() == tflite.Padding.SAME:
                pads = [*_same_pads(in_shape[1], weight.shape[2], stride[0], dilation[0]),
                        *_same_pads(in_shape[2], weight.shape[3], stride[1], dilation[1])]
            args = [name(inputs[0]), add_constant(name(inputs[1]), weight)]
            if len(inputs) > 2 and inputs[2] >= 0:
                args.append(add_constant(name(inputs[2]), constant(inputs[2])))
            nodes.append(GraphNode("conv2d", args, name(out),
                                   {"stride": stride, "pads": pads, "dilation": dilation, "groups": groups}))
            fused(name(out), opt.FusedActivationFunction())
        elif kind == "PRELU":
            alpha = constant(inputs[1])
            nodes.append(GraphNode("prelu", [name(inputs[0]), add_constant(name(inputs[1]), alpha.reshape(-1))], name(out)))
        elif kind in ("ADD", "MUL"):
            opt = tflite.AddOptions() if kind == "ADD" else tflite.MulOptions()
            opt.Init(options.Bytes, options.Pos)
            args = []
            for t in inputs:
                value = constant(t)
                if value is not None:  # NHWC constant → broadcastable NCHW
                    value = np.moveaxis(value.reshape((1,) * (4 - value.ndim) + value.shape), 3, 1)
                    add_constant(name(t), value)
                args.append(name(t))
            nodes.append(GraphNode(kind.lower(), args, name(out)))
            fused(name(out), opt.FusedActivationFunction())
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            opt = tflite.Pool2DOptions()
            opt.Init(options.Bytes, options.Pos)
            kernel, stride = [opt.FilterHeight(), opt.FilterWidth()], [opt.StrideH(), opt.StrideW()]
            in_shape = shape(inputs[0])
            pads = [0, 0, 0, 0]
            if opt.Padding() == tflite.Padding.SAME:
                pads = [*_same_pads(in_shape[1], kernel[0], stride[0]), *_same_pads(in_shape[2], kernel[1], stride[1])]
            nodes.append(GraphNode("max_pool" if kind == "MAX_POOL_2D" else "avg_pool", [name(inputs[0])], name(out),
                                   {"kernel": kernel, "stride": stride, "pads": pads}))
            fused(name(out), opt.FusedActivationFunction())
        elif kind == "PAD":
            amounts = constant(inputs[1])  # [[n0, n1], [h0, h1], [w0, w1], [c0, c1]]
            begin, end = amounts[:, 0], amounts[:, 1]
            nchw = [0, 3, 1, 2]
            nodes.append(GraphNode("pad", [name(inputs[0])], name(out),
                                   {"pads": [int(begin[d]) for d in nchw] + [int(end[d]) for d in nchw]}))
        elif kind in ("RELU", "RELU6"):
            nodes.append(GraphNode(kind.lower(), [name(inputs[0])], name(out)))
        else:
            raise UnsupportedModelError(f"TFLite operator {kind} is not supported by cfexplain's converter")
    graph_inputs = [name(int(t)) for t in graph.InputsAsNumpy()]
    graph_outputs = [name(int(t)) for t in graph.OutputsAsNumpy()]
    return GraphModule(nodes, constants, graph_inputs, graph_outputs)
