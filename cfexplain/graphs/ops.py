"""The operations a converted graph runs: torch functions with the ONNX/TFLite meaning of each.

Image tensors are NCHW floats. Some operations also run on small int64 tensors at run time (the
``Shape → Gather → Concat → Reshape`` chains that exporters emit to flatten a batch of any size);
their shape arguments are read with ``.tolist()``. Everything else is differentiable in both
autograd modes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import UnsupportedModelError

__all__ = ["OPS"]


def _ints(values: torch.Tensor | Sequence[int]) -> list[int]:
    return [int(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def _pad_spatial(x: torch.Tensor, pads: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """``pads`` = (top, bottom, left, right)."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return F.pad(x, [left, right, top, bottom], value=value)


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1, *, upper: bool = True) -> tuple[int, int]:
    """``SAME`` padding (before, after) of one spatial dimension: the output has ``ceil(size /
    stride)`` positions; an odd total goes at the end (``SAME_UPPER``, TensorFlow's) or the start."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def _auto_pads(x: torch.Tensor, auto_pad: str, kernel: Sequence[int], stride: Sequence[int],
               dilation: Sequence[int]) -> list[int]:
    """ONNX ``auto_pad`` (``SAME_UPPER``/``SAME_LOWER``) as (top, bottom, left, right) for ``x``."""
    upper = auto_pad == "SAME_UPPER"
    (top, bottom), (left, right) = (same_pads(x.shape[2 + i], kernel[i], stride[i], dilation[i], upper=upper)
                                    for i in range(2))
    return [top, bottom, left, right]


def _conv2d(x, weight, bias=None, *, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, auto_pad=None):
    if auto_pad:
        pads = _auto_pads(x, auto_pad, weight.shape[2:], stride, dilation)
    top, bottom, left, right = pads
    if top == bottom and left == right:  # the convolution pads by itself, without a padded copy of x
        return F.conv2d(x, weight, bias, stride=tuple(stride), padding=(top, left), dilation=tuple(dilation),
                        groups=groups)
    return F.conv2d(_pad_spatial(x, pads), weight, bias, stride=tuple(stride), dilation=tuple(dilation), groups=groups)


def _conv_transpose2d(x, weight, bias=None, *, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                      output_padding=(0, 0)):
    """ONNX ConvTranspose: the full transposed convolution (``output_padding`` added at the end),
    then ``pads`` cropped from each side."""
    y = F.conv_transpose2d(x, weight, bias, stride=tuple(stride), groups=groups, dilation=tuple(dilation),
                           output_padding=tuple(output_padding))
    top, bottom, left, right = pads
    return y[..., top:y.shape[2] - bottom, left:y.shape[3] - right]


def _prelu(x, alpha):
    # x times a per-element gain (1 or alpha): in forward mode the gain is computed once from the
    # primal and each tangent costs one multiplication (where(x ≥ 0, x, αx) costs two passes)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return x * torch.where(x >= 0, one, alpha.reshape(1, -1, 1, 1))


def _prelu_broadcast(x, slope):
    """ONNX PRelu: ``slope`` broadcasts to ``x`` as NumPy does."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return x * torch.where(x >= 0, one, slope)


def _batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    gain = scale / torch.sqrt(var + epsilon)
    return x * gain.reshape(shape) + (bias - mean * gain).reshape(shape)


def _max_pool(x, *, kernel, stride, pads=(0, 0, 0, 0), dilation=(1, 1), ceil_mode=False, auto_pad=None):
    if auto_pad:
        pads = _auto_pads(x, auto_pad, kernel, stride, dilation)
    return F.max_pool2d(_pad_spatial(x, pads, value=float("-inf")), tuple(kernel), tuple(stride),
                        dilation=tuple(dilation), ceil_mode=ceil_mode)


def _avg_pool(x, *, kernel, stride, pads=(0, 0, 0, 0), count_include_pad=False, ceil_mode=False, auto_pad=None):
    if auto_pad:
        pads = _auto_pads(x, auto_pad, kernel, stride, (1, 1))
    top, bottom, left, right = pads
    if top == bottom and left == right and 2 * top <= kernel[0] and 2 * left <= kernel[1]:
        return F.avg_pool2d(x, tuple(kernel), tuple(stride), padding=(top, left), ceil_mode=ceil_mode,
                            count_include_pad=count_include_pad)
    if ceil_mode:
        raise UnsupportedModelError("AveragePool with ceil_mode and uneven or large pads is not supported")
    summed = F.avg_pool2d(_pad_spatial(x, pads), tuple(kernel), tuple(stride))
    if count_include_pad or not any(pads):
        return summed
    ones = _pad_spatial(torch.ones_like(x[:1, :1]), pads)  # count only real pixels
    return summed / F.avg_pool2d(ones, tuple(kernel), tuple(stride))


def _pad(x, *, pads, mode="constant", value=0.0):
    """``pads`` = begin and end amounts per dimension, NCHW order: [n0, c0, h0, w0, n1, c1, h1, w1]."""
    rank = x.ndim
    torch_pads: list[int] = []
    for dim in reversed(range(rank)):
        torch_pads += [pads[dim], pads[dim + rank]]
    while torch_pads[-2:] == [0, 0] and len(torch_pads) > 2:  # reflect/replicate pad only trailing dimensions
        torch_pads = torch_pads[:-2]
    if mode == "constant":
        return F.pad(x, torch_pads, value=value)
    return F.pad(x, torch_pads, mode={"reflect": "reflect", "edge": "replicate"}[mode])


def _gemm(x, weight, bias=None, *, trans_b=False, trans_a=False, alpha=1.0, beta=1.0):
    y = (x.t() if trans_a else x) @ (weight.t() if trans_b else weight)
    if alpha != 1.0:
        y = y * alpha
    if bias is None:
        return y
    return y + (bias * beta if beta != 1.0 else bias)


def _flatten2d(x, *, axis=1):
    """ONNX Flatten: a matrix of ``prod(shape[:axis])`` rows."""
    axis = axis % x.ndim if x.ndim else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _reshape(x, shape, *, allowzero=False):
    """ONNX Reshape: a 0 in ``shape`` copies the input's dimension (unless ``allowzero``)."""
    target = _ints(shape)
    if not allowzero:
        target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return x.reshape(target)


def _softmax(x, *, axis=-1, flatten=False, log=False):
    """Softmax along ``axis``, or (ONNX before opset 13) over all dimensions from ``axis`` on."""
    function = F.log_softmax if log else F.softmax
    if not flatten or axis % x.ndim == x.ndim - 1:
        return function(x, dim=axis)
    return function(x.reshape(math.prod(x.shape[:axis % x.ndim]), -1), dim=1).reshape(x.shape)


def _shape(x, *, start=0, end=None):
    return torch.tensor(list(x.shape)[start:end], dtype=torch.int64, device=x.device)


def _gather(data, indices, *, axis=0):
    axis = axis % data.ndim
    flat = indices.reshape(-1).long() % data.shape[axis]
    picked = data.index_select(axis, flat)
    return picked.reshape(tuple(data.shape[:axis]) + tuple(indices.shape) + tuple(data.shape[axis + 1:]))


def _unsqueeze(x, *, axes):
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


def _squeeze(x, *, axes=None):
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(a % x.ndim for a in axes))


def _slice(x, *, starts, ends, axes=None, steps=None):
    """ONNX Slice: bounds clamped to the dimension, negative steps walking backwards."""
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise UnsupportedModelError("Slice with a zero step is not defined")
        axis, size = axis % x.ndim, x.shape[axis % x.ndim]
        start, end = start + size if start < 0 else start, end + size if end < 0 else end
        if step > 0:
            index = [slice(None)] * axis + [slice(min(max(start, 0), size), min(max(end, 0), size), step)]
            x = x[tuple(index)]
        else:
            kept = range(min(max(start, 0), size - 1), min(max(end, -1), size - 1), step)
            x = x.index_select(axis, torch.tensor(list(kept), dtype=torch.long, device=x.device))
    return x


def _divide(a, b):
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates


def _cast(x, *, to):
    if to == "float":  # every float type runs as the graph's float type
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())
    return x.to(getattr(torch, to))


def _clip(x, *, low=None, high=None):
    return x.clamp(low, high)


def _hard_sigmoid(x, *, alpha=0.2, beta=0.5):
    return (x * alpha + beta).clamp(0.0, 1.0)


def _reduce(name: str) -> Callable[..., torch.Tensor]:
    def reduce(x, *, axes=None, keepdims=True):
        dims = tuple(range(x.ndim)) if axes is None else tuple(a % x.ndim for a in axes)
        if name == "max":
            return x.amax(dim=dims, keepdim=keepdims)
        return getattr(x, name)(dim=dims, keepdim=keepdims)
    return reduce


def _layer_norm(x, scale, bias=None, *, axis=-1, epsilon=1e-5):
    """ONNX LayerNormalization: normalise over the dimensions from ``axis`` on."""
    dims = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    variance = (x - mean).square().mean(dim=dims, keepdim=True)
    y = (x - mean) / torch.sqrt(variance + epsilon) * scale
    return y if bias is None else y + bias


def _instance_norm(x, scale, bias, *, epsilon=1e-5):
    """ONNX InstanceNormalization: each image's channels normalised over their pixels."""
    dims = tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(dim=dims, keepdim=True)
    variance = (x - mean).square().mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(variance + epsilon) * scale.reshape(shape) + bias.reshape(shape)


def _variadic(combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, mean: bool = False):
    def op(*xs):
        result = xs[0]
        for x in xs[1:]:
            result = combine(result, x)
        return result / len(xs) if mean else result
    return op


def _expand(x, shape):
    return torch.broadcast_to(x, torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape))))


def _constant_of_shape(shape, *, value=0.0, dtype="float32"):
    return torch.full(_ints(shape), value, dtype=getattr(torch, dtype), device=shape.device)


def _source_positions(out_size: int, in_size: int, scale: float, mode: str, device) -> torch.Tensor:
    """Where each output position samples the input (ONNX Resize's coordinate transformations)."""
    x = torch.arange(out_size, dtype=torch.float64, device=device)
    if mode == "align_corners":
        return x * ((in_size - 1) / (out_size - 1)) if out_size > 1 else torch.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "pytorch_half_pixel" and out_size == 1:
        return torch.zeros_like(x)
    if mode == "half_pixel_symmetric":
        adjustment = out_size / (scale * in_size)
        centre = in_size / 2 * (1 - adjustment)
        return centre + (x + 0.5) / scale - 0.5
    return (x + 0.5) / scale - 0.5  # half_pixel, pytorch_half_pixel


def _nearest(position: torch.Tensor, rounding: str) -> torch.Tensor:
    if rounding == "floor":
        return position.floor()
    if rounding == "ceil":
        return position.ceil()
    if rounding == "round_prefer_ceil":
        return (position + 0.5).floor()
    return (position - 0.5).ceil()  # round_prefer_floor


def _resize(x, sizes=None, *, scales=None, mode="nearest", coordinates="half_pixel", nearest_mode="round_prefer_floor"):
    """ONNX Resize of the two spatial dimensions, ``nearest`` or ``linear``: every output pixel is
    computed from the positions the specification gives, so each coordinate transformation and
    rounding rule is exact (and the result is differentiable in the pixel values)."""
    height, width = x.shape[2:]
    if sizes is not None:
        out = _ints(sizes)[-2:]
        factors = [out[0] / height, out[1] / width]
    else:
        factors = list(scales)[-2:]
        out = [int(math.floor(height * factors[0])), int(math.floor(width * factors[1]))]
    for axis, (size, in_size, factor) in enumerate(zip(out, (height, width), factors)):
        position = _source_positions(size, in_size, factor, coordinates, x.device)
        dim = 2 + axis
        if mode == "nearest":
            x = x.index_select(dim, _nearest(position, nearest_mode).clamp(0, in_size - 1).long())
            continue
        position = position.clamp(0, in_size - 1)
        low = position.floor().long()
        high = (low + 1).clamp(max=in_size - 1)
        weight = (position - low).to(x.dtype).reshape((-1, 1) if dim == 2 else (-1,))
        x = x.index_select(dim, low) * (1 - weight) + x.index_select(dim, high) * weight
    return x


OPS: Mapping[str, Callable[..., torch.Tensor]] = {
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "batch_norm": _batch_norm,
    "prelu": _prelu,
    "prelu_broadcast": _prelu_broadcast,
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": _divide,
    "pow": torch.pow,
    "sqrt": torch.sqrt,
    "exp": torch.exp,
    "neg": torch.neg,
    "erf": torch.erf,
    "matmul": torch.matmul,
    "abs": torch.abs,
    "log": torch.log,
    "reciprocal": torch.reciprocal,
    "maximum": _variadic(torch.maximum),
    "minimum": _variadic(torch.minimum),
    "sum": _variadic(torch.add),
    "mean": _variadic(torch.add, mean=True),
    "where": torch.where,
    "equal": torch.eq,
    "greater": torch.gt,
    "less": torch.lt,
    "elu": lambda x, alpha=1.0: F.elu(x, alpha),
    "selu": lambda x, alpha=1.6732632423543772, gamma=1.0507009873554805: gamma * torch.where(
        x > 0, x, alpha * (torch.exp(x) - 1)),
    "softplus": F.softplus,
    "gelu": lambda x, approximate="none": F.gelu(x, approximate=approximate),
    "layer_norm": _layer_norm,
    "instance_norm": _instance_norm,
    "relu": F.relu,
    "relu6": lambda x: F.hardtanh(x, 0.0, 6.0),
    "leaky_relu": lambda x, alpha=0.01: F.leaky_relu(x, alpha),
    "clip": _clip,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": lambda x: x * _hard_sigmoid(x, alpha=1 / 6, beta=0.5),
    "max_pool": _max_pool,
    "avg_pool": _avg_pool,
    "global_avg_pool": lambda x: x.mean(dim=(2, 3), keepdim=True),
    "global_max_pool": lambda x: x.amax(dim=(2, 3), keepdim=True),
    "reduce_mean": _reduce("mean"),
    "reduce_sum": _reduce("sum"),
    "reduce_max": _reduce("max"),
    "pad": _pad,
    "resize": _resize,
    "flatten": lambda x, axis=1: x.flatten(axis),
    "flatten2d": _flatten2d,
    "reshape": lambda x, shape: x.reshape(shape),
    "reshape_to": _reshape,
    "permute": lambda x, dims: x.permute(dims),
    "concat": lambda *xs, axis: torch.cat(xs, dim=axis),
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "slice": _slice,
    "gather": _gather,
    "shape": _shape,
    "cast": _cast,
    "expand": _expand,
    "constant_of_shape": _constant_of_shape,
    "identity": lambda x: x,
    "gemm": _gemm,
    "softmax": _softmax,
}
"""The canonical operations; converters emit only these."""
