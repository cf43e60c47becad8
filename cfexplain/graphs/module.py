"""A static inference graph as a torch module: the target of the ONNX and TFLite converters.

Converters translate a model file into :class:`GraphNode` records over the canonical operations
of :mod:`cfexplain.graphs.ops` plus named constant tensors. :class:`GraphModule` registers the constants
as buffers and runs the nodes in order; it is an ordinary, differentiable ``nn.Module`` that
works on any device and dtype, and its structure is plain data so a converted model can be cached
with ``torch.save`` and read back with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import CorruptCheckpointError
from .ops import OPS

__all__ = ["GraphNode", "GraphModule"]


@dataclass
class GraphNode:
    """One operation: ``outputs = OPS[op](*inputs, **attrs)`` (names refer to graph values)."""

    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


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
