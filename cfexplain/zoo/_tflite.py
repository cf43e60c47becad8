"""TFLite (float32) → :class:`GraphModule`, for MediaPipe-style convolutional models.

The flatbuffer is parsed with the ``tflite`` package. TFLite tensors are NHWC; the converted graph
runs NCHW: convolution kernels are transposed (``OHWI → OIHW``, depthwise ``1HWO → O1HW``), PReLU
slopes and PAD amounts are re-ordered, and TensorFlow's ``SAME`` padding becomes explicit
(possibly asymmetric) padding from the static shapes. Supported operators: CONV_2D,
DEPTHWISE_CONV_2D, PRELU, ADD, MUL, MAX_POOL_2D, AVERAGE_POOL_2D, PAD, RELU, RELU6, CONCATENATION,
DEQUANTIZE (of float16 weights, folded into float32 constants), RESHAPE (in TFLite's NHWC element
order, to its output's static shape with the batch kept), and the fused activations NONE, RELU,
RELU6, TANH. Anything else raises a clear error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import CorruptCheckpointError, UnsupportedModelError
from ..graphs import GraphModule, GraphNode

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
    return _SubgraphConverter(tflite, model, graph).convert()


class _SubgraphConverter:
    """One TFLite subgraph on its way to a :class:`GraphModule`: its constants and nodes so far."""

    def __init__(self, tflite, model, graph) -> None:
        self.tflite, self.model, self.graph = tflite, model, graph
        self.op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.tensor_types = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
        kinds = tflite.ActivationFunctionType
        self.activations = {kinds.NONE: None, kinds.RELU: "relu", kinds.RELU6: "relu6", kinds.TANH: "tanh"}
        self.constants: dict[str, torch.Tensor] = {}
        self.dequantized: dict[int, np.ndarray] = {}
        self.nodes: list[GraphNode] = []

    def convert(self) -> GraphModule:
        """Convert every operator in order; unsupported ones raise :class:`UnsupportedModelError`."""
        handlers = {"CONV_2D": self._convolution, "DEPTHWISE_CONV_2D": self._convolution, "PRELU": self._prelu,
                    "ADD": self._elementwise, "MUL": self._elementwise, "MAX_POOL_2D": self._pool,
                    "AVERAGE_POOL_2D": self._pool, "PAD": self._pad, "RELU": self._relu, "RELU6": self._relu,
                    "RESHAPE": self._reshape, "DEQUANTIZE": self._dequantize, "CONCATENATION": self._concatenation}
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            kind = self.op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            if kind not in handlers:
                raise UnsupportedModelError(f"TFLite operator {kind} is not supported by cfexplain's converter")
            handlers[kind](kind, op, [int(t) for t in op.InputsAsNumpy()], int(op.OutputsAsNumpy()[0]))
        graph_inputs = [self.name(int(t)) for t in self.graph.InputsAsNumpy()]
        graph_outputs = [self.name(int(t)) for t in self.graph.OutputsAsNumpy()]
        return GraphModule(self.nodes, self.constants, graph_inputs, graph_outputs)

    # tensors --------------------------------------------------------------------------------
    def name(self, index: int) -> str:
        """The TFLite name of tensor ``index``."""
        return self.graph.Tensors(index).Name().decode()

    def shape(self, index: int) -> list[int]:
        """The static (NHWC) shape of tensor ``index``."""
        return [int(v) for v in self.graph.Tensors(index).ShapeAsNumpy()]

    def constant(self, index: int) -> np.ndarray | None:
        """Tensor ``index``'s constant value, or ``None`` when it is computed at run time."""
        if index in self.dequantized:
            return self.dequantized[index]
        tensor = self.graph.Tensors(index)
        buffer = self.model.Buffers(tensor.Buffer())
        if buffer.DataLength() == 0:
            return None
        kind = self.tensor_types.get(tensor.Type())
        dtypes = {"FLOAT32": np.float32, "INT32": np.int32, "FLOAT16": np.float16}
        if kind not in dtypes:
            raise UnsupportedModelError(
                f"TFLite tensor {self.name(index)!r} has type {kind}; only float32 models (float16 weights "
                f"allowed) are supported"
            )
        return np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtypes[kind]).reshape(self.shape(index)).copy()

    def add_constant(self, key: str, array: np.ndarray) -> str:
        """Store ``array`` as the graph constant ``key`` and return the key."""
        self.constants[key] = torch.from_numpy(np.ascontiguousarray(array))
        return key

    def options(self, op, kind: type):
        """The operator's builtin options, read as the ``tflite`` options class ``kind``."""
        options, opt = op.BuiltinOptions(), kind()
        opt.Init(options.Bytes, options.Pos)
        return opt

    def fused(self, output: str, code: int) -> None:
        """Split a fused activation off the last node into its own node."""
        if code not in self.activations:
            raise UnsupportedModelError(f"TFLite fused activation {code} is not supported")
        act = self.activations[code]
        if act is not None:
            self.nodes[-1].output = output + ":pre_activation"
            self.nodes.append(GraphNode(act, [output + ":pre_activation"], output))

    # operators ------------------------------------------------------------------------------
    def _convolution(self, kind: str, op, inputs: list[int], out: int) -> None:
        tflite = self.tflite
        opt = self.options(op, tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        kernel = self.constant(inputs[1])
        if kernel is None:
            raise UnsupportedModelError(f"TFLite {kind} {self.name(out)!r} has a non-constant kernel")
        stride, dilation = [opt.StrideH(), opt.StrideW()], [opt.DilationHFactor(), opt.DilationWFactor()]
        in_shape = self.shape(inputs[0])
        if kind == "CONV_2D":
            weight, groups = kernel.transpose(0, 3, 1, 2), 1
        else:
            weight, groups = kernel.transpose(3, 0, 1, 2), in_shape[3]
        pads = [0, 0, 0, 0]
        if opt.Padding() == tflite.Padding.SAME:
            pads = [*_same_pads(in_shape[1], weight.shape[2], stride[0], dilation[0]),
                    *_same_pads(in_shape[2], weight.shape[3], stride[1], dilation[1])]
        args = [self.name(inputs[0]), self.add_constant(self.name(inputs[1]), weight)]
        if len(inputs) > 2 and inputs[2] >= 0:
            args.append(self.add_constant(self.name(inputs[2]), self.constant(inputs[2])))
        self.nodes.append(GraphNode("conv2d", args, self.name(out),
                                    {"stride": stride, "pads": pads, "dilation": dilation, "groups": groups}))
        self.fused(self.name(out), opt.FusedActivationFunction())

    def _prelu(self, kind: str, op, inputs: list[int], out: int) -> None:
        alpha = self.constant(inputs[1]).reshape(-1)
        self.nodes.append(GraphNode("prelu", [self.name(inputs[0]), self.add_constant(self.name(inputs[1]), alpha)],
                                    self.name(out)))

    def _elementwise(self, kind: str, op, inputs: list[int], out: int) -> None:
        opt = self.options(op, self.tflite.AddOptions if kind == "ADD" else self.tflite.MulOptions)
        args = []
        for t in inputs:
            value = self.constant(t)
            if value is not None:  # NHWC constant → broadcastable NCHW
                value = np.moveaxis(value.reshape((1,) * (4 - value.ndim) + value.shape), 3, 1)
                self.add_constant(self.name(t), value)
            args.append(self.name(t))
        self.nodes.append(GraphNode(kind.lower(), args, self.name(out)))
        self.fused(self.name(out), opt.FusedActivationFunction())

    def _pool(self, kind: str, op, inputs: list[int], out: int) -> None:
        opt = self.options(op, self.tflite.Pool2DOptions)
        kernel, stride = [opt.FilterHeight(), opt.FilterWidth()], [opt.StrideH(), opt.StrideW()]
        in_shape = self.shape(inputs[0])
        pads = [0, 0, 0, 0]
        if opt.Padding() == self.tflite.Padding.SAME:
            pads = [*_same_pads(in_shape[1], kernel[0], stride[0]), *_same_pads(in_shape[2], kernel[1], stride[1])]
        self.nodes.append(GraphNode("max_pool" if kind == "MAX_POOL_2D" else "avg_pool", [self.name(inputs[0])],
                                    self.name(out), {"kernel": kernel, "stride": stride, "pads": pads}))
        self.fused(self.name(out), opt.FusedActivationFunction())

    def _pad(self, kind: str, op, inputs: list[int], out: int) -> None:
        amounts = self.constant(inputs[1])  # [[n0, n1], [h0, h1], [w0, w1], [c0, c1]]
        begin, end = amounts[:, 0], amounts[:, 1]
        nchw = [0, 3, 1, 2]
        self.nodes.append(GraphNode("pad", [self.name(inputs[0])], self.name(out),
                                    {"pads": [int(begin[d]) for d in nchw] + [int(end[d]) for d in nchw]}))

    def _dequantize(self, kind: str, op, inputs: list[int], out: int) -> None:
        """float16 weights stored for size: folded into float32 constants at conversion."""
        value = self.constant(inputs[0])
        if value is None or value.dtype != np.float16:
            raise UnsupportedModelError(f"TFLite DEQUANTIZE {self.name(out)!r} is not of a float16 constant "
                                        f"(quantized models are not supported)")
        self.dequantized[out] = value.astype(np.float32)

    def _concatenation(self, kind: str, op, inputs: list[int], out: int) -> None:
        opt = self.options(op, self.tflite.ConcatenationOptions)
        rank = len(self.shape(out))
        axis = opt.Axis() % rank
        if rank == 4:  # NHWC axis → NCHW axis
            axis = [0, 2, 3, 1][axis]
        if any(self.constant(t) is not None for t in inputs):
            raise UnsupportedModelError(f"TFLite CONCATENATION {self.name(out)!r} of constants is not supported")
        self.nodes.append(GraphNode("concat", [self.name(t) for t in inputs], self.name(out), {"axis": axis}))
        self.fused(self.name(out), opt.FusedActivationFunction())

    def _relu(self, kind: str, op, inputs: list[int], out: int) -> None:
        self.nodes.append(GraphNode(kind.lower(), [self.name(inputs[0])], self.name(out)))

    def _reshape(self, kind: str, op, inputs: list[int], out: int) -> None:
        """Reshape in NHWC element order: a 4-D input goes NCHW → NHWC first, a 4-D result back."""
        source, target = self.name(inputs[0]), self.shape(out)
        if not target:
            raise UnsupportedModelError(f"TFLite RESHAPE {self.name(out)!r} has no static output shape")
        if len(self.shape(inputs[0])) == 4:
            self.nodes.append(GraphNode("permute", [source], f"{self.name(out)}:nhwc", {"dims": [0, 2, 3, 1]}))
            source = f"{self.name(out)}:nhwc"
        shape = [-1, *target[1:]]
        if len(target) == 4:
            self.nodes.append(GraphNode("reshape", [source], f"{self.name(out)}:reshaped", {"shape": shape}))
            self.nodes.append(GraphNode("permute", [f"{self.name(out)}:reshaped"], self.name(out), {"dims": [0, 3, 1, 2]}))
        else:
            self.nodes.append(GraphNode("reshape", [source], self.name(out), {"shape": shape}))
