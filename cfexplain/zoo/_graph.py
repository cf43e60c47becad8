"""A static inference graph as a torch module: the target of the ONNX and TFLite converters.

Converters translate a model file into :class:`GraphNode` records over a small set of canonical
NCHW operations (below) plus named constant tensors. :class:`GraphModule` registers the constants
as buffers and runs the nodes in order; it is an ordinary, differentiable ``nn.Module`` that
works on any device and dtype, and its structure is plain data so a converted model can be cached
with ``torch.save`` and read back with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CorruptCheckpointError

__all__ = ["GraphNode", "GraphModule", "OPS"]


@dataclass
class GraphNode:
    """One operation: ``outputs = OPS[op](*inputs, **attrs)`` (names refer to graph values)."""

    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


def _pad_spatial(x: torch.Tensor, pads: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """``pads`` = (top, bottom, left, right)."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return F.pad(x, [left, right, top, bottom], value=value)


def _conv2d(x, weight, bias=None, *, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    top, bottom, left, right = pads
    if top == bottom and left == right:  # the convolution pads by itself, without a padded copy of x
        return F.conv2d(x, weight, bias, stride=tuple(stride), padding=(top, left), dilation=tuple(dilation),
                        groups=groups)
    return F.conv2d(_pad_spatial(x, pads), weight, bias, stride=tuple(stride), dilation=tuple(dilation), groups=groups)


def _prelu(x, alpha):
    # x times a per-element gain (1 or alpha): in forward mode the gain is computed once from the
    # primal and each tangent costs one multiplication (where(x ≥ 0, x, αx) costs two passes)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return x * torch.where(x >= 0, one, alpha.reshape(1, -1, 1, 1))


def _max_pool(x, *, kernel, stride, pads=(0, 0, 0, 0)):
    return F.max_pool2d(_pad_spatial(x, pads, value=float("-inf")), tuple(kernel), tuple(stride))


def _avg_pool(x, *, kernel, stride, pads=(0, 0, 0, 0)):
    if any(pads):  # count only real pixels, as count_include_pad=False
        ones = _pad_spatial(torch.ones_like(x[:1, :1]), pads)
        return F.avg_pool2d(_pad_spatial(x, pads), tuple(kernel), tuple(stride)) / F.avg_pool2d(ones, tuple(kernel), tuple(stride))
    return F.avg_pool2d(x, tuple(kernel), tuple(stride))


def _pad(x, *, pads):
    """``pads`` = begin and end amounts per dimension, NCHW order: [n0, c0, h0, w0, n1, c1, h1, w1]."""
    rank = x.ndim
    torch_pads: list[int] = []
    for dim in reversed(range(rank)):
        torch_pads += [pads[dim], pads[dim + rank]]
    return F.pad(x, torch_pads)


def _gemm(x, weight, bias=None, *, trans_b=False):
    y = x @ (weight.t() if trans_b else weight)
    return y if bias is None else y + bias


OPS: Mapping[str, Callable[..., torch.Tensor]] = {
    "conv2d": _conv2d,
    "prelu": _prelu,
    "add": torch.add,
    "mul": torch.mul,
    "relu": F.relu,
    "relu6": lambda x: F.hardtanh(x, 0.0, 6.0),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "global_avg_pool": lambda x: x.mean(dim=(2, 3), keepdim=True),
    "pad": _pad,
    "flatten": lambda x, axis=1: x.flatten(axis),
    "reshape": lambda x, shape: x.reshape(shape),
    "permute": lambda x, dims: x.permute(dims),
    "concat": lambda *xs, axis: torch.cat(xs, dim=axis),
    "gemm": _gemm,
    "softmax": lambda x, axis=1: x.softmax(dim=axis),
}
"""The canonical operations (NCHW); converters emit only these."""


class GraphModule(nn.Module):
    """Runs a converted static graph.

    Args:
        nodes: operations in execution order.
        constants: constant tensors by value name.
        inputs: the graph's input value names (positional arguments of ``forward``).
        outputs: the value names ``forward`` returns (one tensor, or a tuple for several).
    """

    def __init__(self, nodes: Sequence[GraphNode], constants: Mapping[str, torch.Tensor],
                 inputs: Sequence[str], outputs: Sequence[str]) -> None:
        super().__init__()
        unknown = sorted({node.op for node in nodes} - set(OPS))
        if unknown:
            raise CorruptCheckpointError(f"graph uses operations cfexplain cannot run: {unknown}")
        self.nodes = [GraphNode(**asdict(node)) for node in nodes]
        self.inputs, self.outputs = list(inputs), list(outputs)
        self._buffer_names: dict[str, str] = {}
        for i, (name, tensor) in enumerate(constants.items()):
            self._buffer_names[name] = f"const{i}"
            self.register_buffer(f"const{i}", tensor.detach().clone())
        known = set(self.inputs) | set(self._buffer_names)
        for node in self.nodes:
            missing = [v for v in node.inputs if v not in known]
            if missing:
                raise CorruptCheckpointError(f"graph node {node.op} reads undefined values {missing}")
            known.add(node.output)
        missing_outputs = [v for v in self.outputs if v not in known]
        if missing_outputs:
            raise CorruptCheckpointError(f"graph outputs {missing_outputs} are never computed")
        self._released_after = _last_uses(self.nodes, self.outputs)

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values: dict[str, torch.Tensor] = dict(zip(self.inputs, args))
        for name, buffer_name in self._buffer_names.items():
            values[name] = getattr(self, buffer_name)
        for node, released in zip(self.nodes, self._released_after):
            values[node.output] = OPS[node.op](*(values[v] for v in node.inputs), **node.attrs)
            for name in released:  # an intermediate no later node reads is freed at once
                del values[name]
        results = tuple(values[name] for name in self.outputs)
        return results[0] if len(results) == 1 else results

    def to_serializable(self) -> dict[str, Any]:
        """Plain data (lists, dicts, strings, tensors) that ``from_serializable`` rebuilds from."""
        return {
            "nodes": [asdict(node) for node in self.nodes],
            "constants": {name: getattr(self, buffer) for name, buffer in self._buffer_names.items()},
            "inputs": self.inputs,
            "outputs": self.outputs,
        }

    @classmethod
    def from_serializable(cls, data: Mapping[str, Any]) -> "GraphModule":
        try:
            nodes = [GraphNode(**node) for node in data["nodes"]]
            return cls(nodes, data["constants"], data["inputs"], data["outputs"])
        except (KeyError, TypeError) as exc:
            raise CorruptCheckpointError(f"not a converted graph: {exc}") from exc


def _last_uses(nodes: Sequence[GraphNode], outputs: Sequence[str]) -> list[tuple[str, ...]]:
    """Per node, the intermediate values it is the last reader of (graph outputs excepted): what
    :meth:`GraphModule.forward` can drop after running it, so that a pass holds only the live
    values instead of every intermediate (which matters most for many tangents at once)."""
    produced = {node.output for node in nodes}
    last: dict[str, int] = {}
    for position, node in enumerate(nodes):
        for name in node.inputs:
            last[name] = position
    released: list[list[str]] = [[] for _ in nodes]
    for name, position in last.items():
        if name in produced and name not in outputs:
            released[position].append(name)
    return [tuple(names) for names in released]
