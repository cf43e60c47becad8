"""An ONNX image classifier as a checked torch module: layout, size, batch and output read from the
graph, the conversion compared with an ONNX runtime on a probe batch.

:func:`onnx_classifier_parts` is what :meth:`cfexplain.Classifier.from_onnx` builds on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from ..errors import InputError, ModelOutputError, UnsupportedModelError
from .onnx_reader import OnnxSignature, convert_onnx, load_onnx, signature

if TYPE_CHECKING:
    from ..classifiers import OutputSpec, Preprocessing

__all__ = ["ConversionCheck", "OnnxClassifierParts", "onnx_classifier_parts", "read_image_input", "reference_runner"]

DEFAULT_TOLERANCE = 1e-4
"""A converted graph's outputs may differ from the ONNX runtime's by at most this times
``max(1, largest |output|)`` on the probe batch."""

_INPUT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 2: np.uint8}


@dataclass(frozen=True)
class ConversionCheck:
    """How a converted graph compared with an ONNX runtime when it loaded.

    Attributes:
        reference: the runtime and its version (``"onnxruntime 1.32.0"``, or the ``onnx``
            package's reference evaluator when onnxruntime is not installed).
        max_difference: the largest absolute difference over the probe batch's outputs.
        allowed: the largest difference allowed (tolerance × output scale).
        probe: the probe batch's shape, as the graph takes it.
    """

    reference: str
    max_difference: float
    allowed: float
    probe: tuple[int, ...]


@dataclass(frozen=True)
class OnnxClassifierParts:
    """The pieces of a :class:`~cfexplain.Classifier`: the module (generator layout in, logits or
    the declared scores out), the preprocessing with the graph's input size, the output spec
    (logits when the graph's final softmax or sigmoid was taken off), the layout, and the check."""

    module: nn.Module
    preprocessing: "Preprocessing"
    output: "OutputSpec"
    layout: Literal["NCHW", "NHWC"]
    check: ConversionCheck


class _ChannelsLast(nn.Module):
    """Feeds an NHWC graph from NCHW images."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.graph(images.permute(0, 2, 3, 1))


class _OneByOne(nn.Module):
    """Runs a graph exported for a batch of one on each image of a batch."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.graph(image[None]) for image in images])


def reference_runner(model: Any) -> tuple[str, Callable[[np.ndarray], list[np.ndarray]]]:
    """A function running the ONNX model on one input array, and its name: onnxruntime when it
    is installed (``pip install 'cfexplain[onnx]'``), else the ``onnx`` package's reference
    evaluator (slower; fine for a probe batch)."""
    initializers = {init.name for init in model.graph.initializer}
    name = next(value.name for value in model.graph.input if value.name not in initializers)
    try:
        import onnxruntime
    except ImportError:
        import onnx
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return f"onnx {onnx.__version__} reference evaluator", lambda x: list(evaluator.run(None, {name: x}))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors for graphs it cannot run
        raise UnsupportedModelError(f"onnxruntime cannot run the ONNX graph: {exc}") from exc
    return f"onnxruntime {onnxruntime.__version__}", lambda x: list(session.run(None, {name: x}))


def onnx_classifier_parts(path: str | os.PathLike, *, output: "OutputSpec", preprocessing: "Preprocessing",
                          layout: Literal["NCHW", "NHWC"] | None = None, output_name: str | None = None,
                          tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> OnnxClassifierParts:
    """Read, convert and check an ONNX image classifier (see :meth:`cfexplain.Classifier.from_onnx`)."""
    model, sig, index, layout, preprocessing, dtype = read_image_input(path, preprocessing, layout, output_name)
    batch = sig.input_shape[0]
    if batch not in (None, 1):
        raise UnsupportedModelError(f"the ONNX graph's batch size is fixed at {batch}; export it with a dynamic batch "
                                    f"size (or a batch of 1)")
    full = convert_onnx(model, outputs=[sig.outputs[index]])
    check = _check(model, full, sig, index, layout, preprocessing, output, dtype, tolerance, seed)
    activation = sig.activations[index]
    take_off = activation is not None and not output.multi_head and (
        (activation[0] in ("Softmax", "LogSoftmax") and output.kind == "softmax")
        or (activation[0] == "Sigmoid" and output.kind == "sigmoid"))
    if take_off:  # exact logits instead of the log of rounded probabilities
        graph: nn.Module = convert_onnx(model, outputs=[activation[1]])
        output = replace(output, scores="logits")
    else:
        graph = full
    graph = graph.requires_grad_(False).eval()
    if batch == 1 and not _takes_batches(graph, layout, preprocessing, seed):
        graph = _OneByOne(graph)
    module = _ChannelsLast(graph) if layout == "NHWC" else graph
    return OnnxClassifierParts(module, preprocessing, output, layout, check)


def read_image_input(path: str | os.PathLike, preprocessing: "Preprocessing", layout: str | None,
                     output_name: str | None) -> tuple[Any, OnnxSignature, int, Literal["NCHW", "NHWC"],
                                                       "Preprocessing", str]:
    """What an ONNX image classifier takes and gives: the loaded model, its signature, the index of
    the output holding the scores, the input layout, the preprocessing with the graph's input size,
    and the input's element type (``"float32"``, ``"uint8"`` …)."""
    model = load_onnx(path)
    sig = signature(model)
    index = _output_index(sig, output_name)
    layout = _layout(sig, layout)
    preprocessing = _sized(sig, layout, preprocessing)
    element_type = next(v for v in model.graph.input if v.name == sig.input).type.tensor_type.elem_type
    if element_type not in _INPUT_TYPES:
        raise UnsupportedModelError(f"the ONNX graph's input {sig.input!r} has element type {element_type}; "
                                    f"cfexplain feeds float32, float16, float64 or uint8 images")
    return model, sig, index, layout, preprocessing, np.dtype(_INPUT_TYPES[element_type]).name


def _output_index(sig: OnnxSignature, output_name: str | None) -> int:
    if output_name is not None:
        if output_name not in sig.outputs:
            raise InputError(f"the ONNX graph has no output {output_name!r}; its outputs: {list(sig.outputs)}")
        return sig.outputs.index(output_name)
    if len(sig.outputs) > 1:
        raise InputError(f"the ONNX graph has {len(sig.outputs)} outputs {list(sig.outputs)}: say which one holds the "
                         f"class scores (output_name=, or [classifier] output in a config)")
    return 0


def _layout(sig: OnnxSignature, layout: str | None) -> Literal["NCHW", "NHWC"]:
    shape = sig.input_shape
    if len(shape) != 4:
        raise UnsupportedModelError(f"the ONNX graph's input {sig.input!r} has {len(shape)} dimensions; an image "
                                    f"classifier takes (N, C, H, W) or (N, H, W, C)")
    if layout is not None and layout not in ("NCHW", "NHWC"):
        raise InputError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    if layout is None:
        first, last = shape[1] in (1, 3), shape[3] in (1, 3)
        if first == last:
            raise InputError(f"cannot tell the layout of the ONNX input {sig.input!r} with shape "
                             f"{_shape_text(shape)}: give layout='NCHW' or 'NHWC'")
        layout = "NCHW" if first else "NHWC"
    channels = shape[1] if layout == "NCHW" else shape[3]
    if channels not in (None, 3):
        raise UnsupportedModelError(f"the ONNX graph takes {channels}-channel images ({layout} {_shape_text(shape)}); "
                                    f"cfexplain feeds it RGB images (3 channels)")
    return layout  # type: ignore[return-value]


def _sized(sig: OnnxSignature, layout: str, preprocessing: "Preprocessing") -> "Preprocessing":
    shape = sig.input_shape
    spatial = shape[2:] if layout == "NCHW" else shape[1:3]
    wanted = None if preprocessing.size is None else (
        (preprocessing.size,) * 2 if isinstance(preprocessing.size, int) else tuple(preprocessing.size))
    if None in spatial:
        if wanted is None:
            raise InputError(f"the ONNX graph's image size is dynamic ({layout} {_shape_text(shape)}): give the size "
                             f"the model was trained at (preprocessing size=, or [classifier.preprocessing] size)")
        return preprocessing
    if wanted is not None and tuple(wanted) != tuple(spatial):
        raise InputError(f"the preprocessing size {tuple(wanted)} does not match the ONNX graph's input "
                         f"{tuple(spatial)} ({layout} {_shape_text(shape)})")
    return replace(preprocessing, size=tuple(spatial))


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _probe(preprocessing: "Preprocessing", layout: str, seed: int, count: int = 2) -> torch.Tensor:
    """Preprocessed random images, as the graph takes them."""
    size = preprocessing.size
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, height, width, generator=generator) * 2 - 1
    x = preprocessing(images)
    return x.permute(0, 2, 3, 1) if layout == "NHWC" else x


def _check(model: Any, graph: nn.Module, sig: OnnxSignature, index: int, layout: str,
           preprocessing: "Preprocessing", output: "OutputSpec", dtype: str, tolerance: float,
           seed: int) -> ConversionCheck:
    """Compare the converted graph with an ONNX runtime on a probe batch of the input's ``dtype``;
    refuse on a mismatch."""
    x = _probe(preprocessing, layout, seed)
    if dtype == "uint8":
        x = x.round().clamp(0, 255)
    reference, run = reference_runner(model)
    feeds = [x[i:i + 1] for i in range(len(x))] if sig.input_shape[0] == 1 else [x]
    try:
        expected = np.concatenate([run(feed.numpy().astype(dtype))[index] for feed in feeds])
    except UnsupportedModelError:
        raise
    except Exception as exc:  # the runtime's own failure on this input
        raise UnsupportedModelError(f"{reference} fails on a probe batch of shape {tuple(x.shape)}: {exc}") from exc
    with torch.no_grad():
        ours = torch.cat([graph(feed) for feed in feeds]).double().numpy()
    output.to_logits(torch.from_numpy(expected.astype(np.float32)))  # the shape against the labels
    if not np.all(np.isfinite(expected)):
        raise ModelOutputError(f"the ONNX graph returns NaN or infinite values on a probe batch ({reference})")
    if ours.shape != expected.shape:
        raise UnsupportedModelError(f"the converted graph returns shape {ours.shape}, {reference} {expected.shape}")
    difference = float(np.abs(ours - expected).max())
    allowed = tolerance * max(1.0, float(np.abs(expected).max()))
    if not difference <= allowed:
        raise UnsupportedModelError(
            f"the converted ONNX graph differs from {reference} by {difference:.3g} on a probe batch (allowed "
            f"{allowed:.3g}); cfexplain will not audit a model it does not reproduce")
    return ConversionCheck(reference, difference, allowed, tuple(x.shape))


def _takes_batches(graph: nn.Module, layout: str, preprocessing: "Preprocessing", seed: int) -> bool:
    """Whether a graph exported for one image gives, on a batch of two, what it gives one by one
    (its reshapes may have the batch of one written into them)."""
    x = _probe(preprocessing, layout, seed + 1)
    with torch.no_grad():
        single = torch.cat([graph(x[i:i + 1]) for i in range(len(x))])
        try:
            batched = graph(x)
        except Exception:  # a reshape to a fixed batch of one fails on two images
            return False
    return batched.shape == single.shape and bool(torch.allclose(batched, single, rtol=1e-4, atol=1e-5))
