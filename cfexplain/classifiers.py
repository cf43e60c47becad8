"""The classifier adapter: a user's model, its preprocessing and its output kind behind one view.

The rest of the library sees every classifier the same way: :meth:`Classifier.logits` and
:meth:`Classifier.probabilities` of generator images (float NCHW in about ``[-1, 1]``), ``(N, K)``
with K labels, and a :attr:`Classifier.kind`:

* ``"softmax"``: K mutually exclusive classes; logits are (log-)scores whose softmax is the class
  distribution;
* ``"sigmoid"``: K independent binary heads (multi-label, e.g. the 40 CelebA attributes); logits
  are log-odds, a head is "on" when its probability exceeds :attr:`OutputSpec.threshold`.

Example::

    clf = Classifier(
        model,
        preprocessing=Preprocessing(size=224, value_range=(0, 1), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        output=OutputSpec.softmax(["female", "male"]),
    )
    p = clf.probabilities(generator.synthesize(codes))
"""

from __future__ import annotations

import importlib
import inspect
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._device import module_device
from .analyzers.base import check_images
from .errors import CfexplainError, CheckpointNotFoundError, CorruptCheckpointError, InputError, ModelOutputError, describe_exception
from .imaging import bilinear_resize

__all__ = ["Classifier", "IDENTITY", "OutputSpec", "Preprocessing"]

_INTERPOLATIONS = ("bilinear", "bicubic", "area", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """How generator images (RGB, about ``[-1, 1]``) become the classifier's input.

    Applied in this order, all differentiable: crop → resize → value range → channel order →
    ``(x − mean) / std``.

    Attributes:
        size: input ``(height, width)`` (an int for square); ``None`` keeps the image size.
        crop: ``(top, left, height, width)`` as fractions of the image, taken before resizing
            (e.g. ``(0.1, 0.1, 0.8, 0.8)`` for a centre crop of 80 %); ``None`` for no crop.
        value_range: the pixel range the model's normalisation starts from, e.g. ``(0, 1)`` or
            ``(0, 255)``; ``[-1, 1]`` is mapped linearly onto it.
        mean, std: per-channel normalisation in ``value_range`` units (3 values, or 1 for all), in
            the model's channel order (BGR models: BGR means).
        channel_order: ``"RGB"`` or ``"BGR"``.
        interpolation: ``"bilinear"``, ``"bicubic"``, ``"area"`` or ``"nearest"``.
        antialias: low-pass filter when shrinking (bilinear/bicubic).
    """

    size: int | tuple[int, int] | None = None
    crop: tuple[float, float, float, float] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    interpolation: str = "bilinear"
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise InputError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise InputError(f"interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")
        if len(self.mean) not in (1, 3) or len(self.std) not in (1, 3):
            raise InputError("mean and std need 1 or 3 values")
        if any(s == 0 for s in self.std):
            raise InputError("std values must be non-zero")
        if self.crop is not None:
            top, left, height, width = self.crop
            if not (0 <= top < 1 and 0 <= left < 1 and 0 < height <= 1 - top + 1e-9 and 0 < width <= 1 - left + 1e-9):
                raise InputError(f"crop must be (top, left, height, width) fractions inside the image, got {self.crop}")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.crop is not None:
            h, w = x.shape[-2:]
            top, left, height, width = self.crop
            t, l = round(top * h), round(left * w)
            x = x[..., t:t + max(1, round(height * h)), l:l + max(1, round(width * w))]
        if self.size is not None:
            size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
            if tuple(x.shape[-2:]) != size:
                if self.interpolation == "bilinear":
                    x = bilinear_resize(x, size, antialias=self.antialias)
                elif self.interpolation == "bicubic":
                    shrinking = x.shape[-1] > size[1] or x.shape[-2] > size[0]
                    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False,
                                      antialias=self.antialias and shrinking)
                else:
                    x = F.interpolate(x, size=size, mode=self.interpolation)
        low, high = self.value_range
        x = (x + 1) * ((high - low) / 2) + low
        if self.channel_order == "BGR":
            x = x.flip(1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


IDENTITY = Preprocessing(value_range=(-1.0, 1.0))
"""Preprocessing that passes generator images through unchanged."""


@dataclass(frozen=True)
class OutputSpec:
    """What the model returns and how to read it. Build with :meth:`softmax`, :meth:`sigmoid`
    or :meth:`heads`.

    Except for :meth:`heads`, the model returns an ``(N, K)`` tensor of scores, K the number of
    labels (a single sigmoid head may also return ``(N,)``). The tensor may come alone or inside a
    1-tuple, a mapping under ``"logits"``, or an output object's ``logits`` attribute (as Hugging
    Face models return); for anything else, wrap the model so that it returns the scores.

    Attributes:
        kind: ``"softmax"`` (exclusive classes) or ``"sigmoid"`` (independent binary heads).
        labels: one name per class / head.
        scores: whether the model returns ``"logits"`` or ``"probabilities"``.
        multi_head: the model returns a list/tuple of per-head tensors.
        threshold: probability above which a sigmoid head counts as "on".
    """

    kind: Literal["softmax", "sigmoid"]
    labels: tuple[str, ...]
    scores: Literal["logits", "probabilities"] = "logits"
    multi_head: bool = False
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("softmax", "sigmoid"):
            raise InputError(f"kind must be 'softmax' or 'sigmoid', got {self.kind!r}")
        if self.scores not in ("logits", "probabilities"):
            raise InputError(f"scores must be 'logits' or 'probabilities', got {self.scores!r}")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise InputError(f"labels must be non-empty and unique, got {list(self.labels)}")
        if self.kind == "softmax" and len(self.labels) < 2:
            raise InputError("a softmax output needs at least two labels")
        if not 0 < self.threshold < 1:
            raise InputError(f"threshold must be in (0, 1), got {self.threshold}")

    @classmethod
    def softmax(cls, labels: Sequence[str], *, scores: Literal["logits", "probabilities"] = "logits") -> "OutputSpec":
        """K exclusive classes; the model returns ``(N, K)`` logits or probabilities."""
        return cls("softmax", tuple(labels), scores)

    @classmethod
    def sigmoid(cls, labels: Sequence[str], *, scores: Literal["logits", "probabilities"] = "logits",
                threshold: float = 0.5) -> "OutputSpec":
        """K independent binary heads; the model returns ``(N, K)`` log-odds or probabilities."""
        return cls("sigmoid", tuple(labels), scores, threshold=threshold)

    @classmethod
    def heads(cls, labels: Sequence[str], *, scores: Literal["logits", "probabilities"] = "logits",
              threshold: float = 0.5) -> "OutputSpec":
        """A list of K heads (as 40-attribute CelebA models return), each ``(N,)``/``(N, 1)`` (one
        binary score) or ``(N, 2)`` (two-class scores, the second being "on"). Read as K sigmoid
        heads."""
        return cls("sigmoid", tuple(labels), scores, multi_head=True, threshold=threshold)

    def to_logits(self, raw: object) -> torch.Tensor:
        """The uniform ``(N, K)`` logits of a raw model output (the forms are listed in the class docstring)."""
        if self.multi_head:
            if not isinstance(raw, (list, tuple)) or not all(isinstance(h, torch.Tensor) for h in raw):
                raise ModelOutputError(f"the model should return a list of {len(self.labels)} head tensors, got {type(raw).__name__}")
            if len(raw) != len(self.labels):
                raise ModelOutputError(f"the model returned {len(raw)} heads for {len(self.labels)} labels")
            return torch.stack([self._head_logit(h, i) for i, h in enumerate(raw)], dim=1)
        raw = _scores_inside(raw)
        if not isinstance(raw, torch.Tensor):
            raise ModelOutputError(
                f"the model should return a tensor of scores (or a 1-tuple, a mapping or an object holding it as "
                f"'logits'), got {_describe(raw)}: wrap the model so that it returns the class scores")
        if raw.ndim == 1 and self.kind == "sigmoid" and len(self.labels) == 1:
            raw = raw[:, None]  # one binary score per image
        if raw.ndim != 2 or raw.shape[1] != len(self.labels):
            raise ModelOutputError(
                f"the model returned shape {tuple(raw.shape)}, expected (N, {len(self.labels)}) for labels {list(self.labels)}"
            )
        if self.scores == "logits":
            return raw
        return _log_probabilities(raw) if self.kind == "softmax" else _log_odds(raw)

    def _head_logit(self, head: torch.Tensor, index: int) -> torch.Tensor:
        head = head.reshape(head.shape[0], -1)
        if head.shape[1] == 1:
            return head[:, 0] if self.scores == "logits" else _log_odds(head[:, 0])
        if head.shape[1] == 2:
            if self.scores == "logits":
                return head[:, 1] - head[:, 0]
            return _log_probabilities(head)[:, 1] - _log_probabilities(head)[:, 0]
        raise ModelOutputError(f"head {index} ({self.labels[index]}) has shape {tuple(head.shape)}, expected (N, 1) or (N, 2)")


def _scores_inside(raw: object) -> object:
    """The scores tensor inside the containers models commonly return: a 1-tuple or 1-list, a
    mapping with a ``"logits"`` key, or an output object with a ``logits`` tensor (as Hugging Face
    models return); anything else unchanged."""
    if isinstance(raw, (list, tuple)) and len(raw) == 1:
        return raw[0]
    if isinstance(raw, Mapping) and "logits" in raw:
        return raw["logits"]
    logits = getattr(raw, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else raw


def _describe(raw: object) -> str:
    if isinstance(raw, (list, tuple)):
        return f"a {type(raw).__name__} of {len(raw)}"
    if isinstance(raw, Mapping):
        return f"a mapping with keys {list(raw)[:5]}"
    return type(raw).__name__


def _log_probabilities(p: torch.Tensor) -> torch.Tensor:
    return p.clamp_min(torch.finfo(p.dtype).tiny).log()


def _log_odds(p: torch.Tensor) -> torch.Tensor:
    eps = torch.finfo(p.dtype).eps
    p = p.clamp(eps, 1 - eps)
    return p.log() - (-p).log1p()


class Classifier(nn.Module):
    """A user's image classifier with its preprocessing and output spec.

    Args:
        model: an ``nn.Module`` (put in eval mode) or any callable mapping a preprocessed batch to
            the raw output described by ``output``.
        preprocessing: how generator images become the model's input.
        output: what the model returns (:class:`OutputSpec`).
        name: a display name for reports.

    The first call validates the model's output (shape against the labels, finite values) and
    raises :class:`~cfexplain.errors.ModelOutputError` with what was expected and found; every
    call checks for NaN/inf.
    """

    def __init__(self, model: nn.Module | Callable[[torch.Tensor], object], *,
                 preprocessing: Preprocessing | None = None, output: OutputSpec, name: str | None = None) -> None:
        super().__init__()
        if not callable(model):
            raise InputError(f"model must be an nn.Module or a callable, got {type(model).__name__}")
        if not isinstance(output, OutputSpec):
            raise InputError(f"output must be an OutputSpec, got {type(output).__name__}")
        if isinstance(model, nn.Module):
            self.model = model.eval()
        else:
            self._function = model
        self.preprocessing = preprocessing or Preprocessing()
        self.output = output
        self.name = name or getattr(model, "__name__", type(model).__name__)

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_torchscript(cls, path: str | os.PathLike, *, device: torch.device | str = "cpu", **kwargs) -> "Classifier":
        """Load a TorchScript file (``torch.jit.save``). TorchScript files are programs: load only
        files you trust."""
        path = cls.check_torchscript_file(path)
        try:
            model = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # torch raises RuntimeError, ValueError or others on damaged archives
            raise CorruptCheckpointError(f"{path}: damaged TorchScript archive ({describe_exception(exc)})") from exc
        kwargs.setdefault("name", path.stem)
        return cls(model, **kwargs)

    @staticmethod
    def check_torchscript_file(path: str | os.PathLike) -> Path:
        """``path``, or the error a damaged or missing TorchScript file gets (before its labels or
        anything else are asked for): :class:`~cfexplain.errors.CheckpointNotFoundError` or
        :class:`~cfexplain.errors.CorruptCheckpointError`, naming the file."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointNotFoundError(f"no TorchScript file at {path}")
        if not zipfile.is_zipfile(path):
            raise CorruptCheckpointError(f"{path} is not a TorchScript archive (torch.jit.save writes a zip file; this "
                                         f"one is truncated, damaged or of another kind)")
        return path

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, *, output: OutputSpec, preprocessing: Preprocessing | None = None,
                  layout: Literal["NCHW", "NHWC"] | None = None, output_name: str | None = None,
                  tolerance: float = 1e-4, device: torch.device | str = "cpu", name: str | None = None,
                  black_box: bool = False) -> "Classifier":
        """Convert an ONNX image classifier into a differentiable torch module, checked against an
        ONNX runtime; or, with ``black_box``, run the file through the runtime as a black box.

        The graph is read by cfexplain's own converter (:data:`cfexplain.graphs.SUPPORTED_OPERATORS`
        lists the operators; any other is refused by name). What the graph says is used:

        * the layout, NCHW or NHWC, from its input shape (``layout`` decides when the shape cannot,
          e.g. a dynamic channel dimension);
        * the input size, which ``preprocessing.size`` may leave out (and must give when the graph's
          size is dynamic);
        * a final Softmax (or LogSoftmax, or a Sigmoid for sigmoid heads) is taken off and its input
          used as the logits, so the graph's probabilities need no declaring.

        Value range, normalisation and channel order are not in an ONNX file: declare them in
        ``preprocessing`` as for any classifier. When the graph loads, it runs on a probe batch of
        two preprocessed random images in the converted module and in onnxruntime (or, without it,
        the ``onnx`` package's reference evaluator); a difference above ``tolerance × max(1,
        largest |output|)`` is refused. The comparison is kept as ``conversion_check``.

        Args:
            path: the ``.onnx`` file (external weight files next to it are read).
            output: the labels and output kind.
            preprocessing: how generator images become the graph's input.
            layout: ``"NCHW"`` or ``"NHWC"``; read from the graph when ``None``.
            output_name: which graph output holds the scores, when it has several.
            tolerance: the conversion check's relative tolerance.
            device: where the converted module runs.
            name: a display name (default: the file's stem).
            black_box: do not convert: query the file through onnxruntime (or the reference
                evaluator) as a black box (:meth:`from_function`), for graphs with operators
                the converter lacks. Layout, size and element type are read as above; the graph's
                output is taken as it is (probabilities after a final Softmax or Sigmoid).

        Raises:
            CheckpointNotFoundError, CorruptCheckpointError: no file, or not a valid ONNX model.
            UnsupportedModelError: operators the converter lacks, several inputs, a fixed batch
                above one, or a conversion that does not reproduce the runtime.
            InputError: an ambiguous layout, a dynamic size without ``preprocessing.size``.
            ModelOutputError: outputs that do not match the labels, or NaN.
        """
        from .errors import UnsupportedModelError
        from .graphs import onnx_classifier_parts

        if black_box:
            return cls._from_onnx_runtime(path, output=output, preprocessing=preprocessing or Preprocessing(),
                                          layout=layout, output_name=output_name, name=name)
        try:
            parts = onnx_classifier_parts(path, output=output, preprocessing=preprocessing or Preprocessing(),
                                          layout=layout, output_name=output_name, tolerance=tolerance)
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{exc}. It can still be audited as a black box through onnxruntime: "
                                        f"black_box=True (command line: --black-box)") from exc
        classifier = cls(parts.module.to(device), preprocessing=parts.preprocessing, output=parts.output,
                         name=name or Path(path).stem)
        classifier.conversion_check = parts.check
        return classifier

    @classmethod
    def _from_onnx_runtime(cls, path: str | os.PathLike, *, output: OutputSpec, preprocessing: Preprocessing,
                           layout: Literal["NCHW", "NHWC"] | None, output_name: str | None,
                           name: str | None) -> "Classifier":
        """:meth:`from_onnx` with ``black_box``: the file queried through an ONNX runtime."""
        from dataclasses import replace

        from .black_box import QueryFunction
        from .graphs import reference_runner
        from .graphs.onnx_model import read_image_input

        model, sig, index, layout, preprocessing, dtype = read_image_input(path, preprocessing, layout, output_name)
        activation = sig.activations[index]
        if activation is not None and activation[0] in ("Softmax", "Sigmoid"):
            output = replace(output, scores="probabilities")
        _, run = reference_runner(model)
        function = QueryFunction(lambda x: run(x)[index], layout=layout, dtype=dtype,
                                 batch_size=1 if sig.input_shape[0] == 1 else 64,
                                 simplex=output.kind == "softmax" and output.scores == "probabilities",
                                 outputs=len(output.labels))
        function.__name__ = Path(path).stem
        return cls(function, preprocessing=preprocessing, output=output, name=name or Path(path).stem)

    @classmethod
    def from_function(cls, function: Callable[[Any], Any], *, output: OutputSpec,
                      preprocessing: Preprocessing | None = None, layout: Literal["NHWC", "NCHW"] = "NHWC",
                      dtype: str = "uint8", batch_size: int = 64, cache: bool = True,
                      name: str | None = None) -> "Classifier":
        """A classifier reached only through its predictions: any function from a batch of images
        (a NumPy array) to probabilities or logits: a service, a scikit-learn or TensorFlow model,
        an ensemble.

        It has no gradients, so audits and searches run from queries only (finite-difference
        Newton steps in the subspaces; see docs/classifiers.md, "Black-box classifiers"). Each
        image sent is a query: :attr:`queries` counts them; repeated images are answered from a
        cache; calls take at most ``batch_size`` images.

        Args:
            function: maps ``(N, H, W, 3)`` (NHWC) or ``(N, 3, H, W)`` (NCHW) arrays of
                ``dtype`` to ``(N, K)`` scores (an array, a list, a tensor), K the labels.
            output: the labels, kind, and whether it returns ``"logits"`` or ``"probabilities"``
                (softmax probabilities are checked to sum to one).
            preprocessing: generator images → the function's pixels. Default: 0–255 for
                ``uint8``, 0–1 for floats, at the generator's size. ``uint8`` pixels are rounded
                and clipped to 0–255, so their value range must be ``(0, 255)``.
            layout: ``"NHWC"`` (default, as Keras and PIL) or ``"NCHW"``.
            dtype: ``"uint8"`` (default), ``"float32"``, ``"float64"`` or ``"float16"``.
            batch_size: the most images per call.
            cache: answer repeated images from a cache.
            name: a display name (default: the function's name).

        Raises:
            InputError: a bad layout, dtype or batch size, or a ``uint8`` value range other than 0–255.
            ModelOutputError: (when called) the wrong shape, NaN, softmax probabilities that do not
                sum to one, or the function's own error.
        """
        from .black_box import QueryFunction

        if output.multi_head:
            raise InputError("a black-box function returns one array of scores: use OutputSpec.sigmoid for heads")
        if dtype == "uint8" and preprocessing is not None and tuple(preprocessing.value_range) != (0.0, 255.0):
            raise InputError(f"uint8 images hold 0–255 pixels: the preprocessing's value_range must be (0, 255), got "
                             f"{tuple(preprocessing.value_range)} (or declare dtype='float32')")
        if preprocessing is None:
            preprocessing = Preprocessing(value_range=(0.0, 255.0) if dtype == "uint8" else (0.0, 1.0))
        model = QueryFunction(function, layout=layout, dtype=dtype, batch_size=batch_size, cache=cache,
                              simplex=output.kind == "softmax" and output.scores == "probabilities",
                              outputs=len(output.labels))
        return cls(model, preprocessing=preprocessing, output=output, name=name or model.__name__)

    @classmethod
    def from_callable(cls, spec: str, **kwargs) -> "Classifier":
        """Import ``"package.module:attribute"``.

        The attribute may be an ``nn.Module`` instance (used as the model), a factory taking no
        required arguments (called once; it must return the model), or a function of the
        preprocessed batch (used as the model).
        """
        module_name, sep, attribute = spec.partition(":")
        if not sep or not module_name or not attribute:
            raise InputError(f"expected 'module:callable', got {spec!r}")
        try:
            target = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"cannot import {module_name!r} for the classifier: {exc}") from exc
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise InputError(f"{module_name!r} has no attribute {attribute!r}")
            target = getattr(target, part)
        if isinstance(target, nn.Module):
            model = target
        elif callable(target) and _takes_no_required_arguments(target):
            model = target()
        elif callable(target):
            model = target
        else:
            raise InputError(f"{spec!r} is not callable")
        kwargs.setdefault("name", attribute)
        return cls(model, **kwargs)

    # ------------------------------------------------------------------ the uniform view

    @property
    def labels(self) -> tuple[str, ...]:
        """Class or head names, in output order."""
        return self.output.labels

    @property
    def kind(self) -> str:
        """``"softmax"`` or ``"sigmoid"``."""
        return self.output.kind

    @property
    def num_outputs(self) -> int:
        """K, the number of classes or heads."""
        return len(self.output.labels)

    @property
    def differentiable(self) -> bool:
        """Whether gradients reach the images (false for a black box: :meth:`from_function`,
        ``from_onnx(black_box=True)``); searches then run from queries only."""
        model = self.model if "model" in self._modules else self._function
        return bool(getattr(model, "differentiable", True))

    @property
    def queries(self) -> int | None:
        """Images sent to a black-box function so far (``None`` for a torch model)."""
        model = self.model if "model" in self._modules else self._function
        return getattr(model, "queries", None) if not self.differentiable else None

    def _run(self, x: torch.Tensor) -> object:
        model = self.model if "model" in self._modules else self._function
        return model(x)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` logits of generator images ``(N, 3, H, W)`` (softmax scores or log-odds)."""
        images = check_images(images)
        device = module_device(self)
        x = self.preprocessing(images.to(device) if device is not None else images)
        try:
            raw = self._run(x)
        except CfexplainError:
            raise
        except Exception as exc:  # the user's network failed: say which, on what input
            raise ModelOutputError(f"the classifier {self.name!r} failed on a batch of {tuple(x.shape)} preprocessed "
                                   f"images: {describe_exception(exc)} "
                                   f"(do its input size and preprocessing match?)") from exc
        logits = self.output.to_logits(raw)
        if logits.shape[0] != images.shape[0]:
            raise ModelOutputError(f"the model returned {logits.shape[0]} rows for a batch of {images.shape[0]} images")
        if not bool(torch.isfinite(logits).all()):
            raise ModelOutputError("the classifier returned NaN or infinite values")
        return logits

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` class probabilities (softmax) or per-head probabilities (sigmoid)."""
        logits = self.logits(images)
        return logits.softmax(dim=1) if self.kind == "softmax" else logits.sigmoid()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax: ``(N,)`` class indices. Sigmoid: ``(N, K)`` booleans (probability > threshold)."""
        p = self.probabilities(images)
        return p.argmax(dim=1) if self.kind == "softmax" else p > self.output.threshold

    def label_index(self, target: int | str) -> int:
        """The index of a class/head given by index or label; raises :class:`InputError` when out of range."""
        if isinstance(target, str):
            if target not in self.labels:
                raise InputError(f"unknown label {target!r}; labels: {list(self.labels)}")
            return self.labels.index(target)
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < self.num_outputs:
            raise InputError(f"target index {target!r} is out of range for {self.num_outputs} outputs {list(self.labels)}")
        return target

    def grouped(self, groups: Mapping[str, Sequence[int | str]], *, name: str | None = None) -> "Classifier":
        """A softmax classifier over groups of this (softmax) classifier's classes.

        Each group's probability is the sum of its classes' probabilities (its logit is the
        log-sum-exp of their logits), e.g. age bins grouped into "under 30" / "30 and over".

        Args:
            groups: group label → class indices or labels; every class in at most one group.
        """
        if self.kind != "softmax":
            raise InputError("only softmax classifiers can be grouped")
        if len(groups) < 2:
            raise InputError("grouping needs at least two groups")
        members = [[self.label_index(c) for c in classes] for classes in groups.values()]
        flat = [i for group in members for i in group]
        if not all(members) or len(flat) != len(set(flat)):
            raise InputError("every group needs classes, and no class may be in two groups")
        return Classifier(_GroupedLogits(self, members), preprocessing=IDENTITY, name=name or f"{self.name} (grouped)",
                          output=OutputSpec.softmax(tuple(groups)))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}, labels={list(self.labels)[:6]}{' …' if self.num_outputs > 6 else ''}"


class _GroupedLogits(nn.Module):
    def __init__(self, inner: Classifier, members: list[list[int]]) -> None:
        super().__init__()
        self.inner, self.members = inner, members

    @property
    def differentiable(self) -> bool:
        """A grouping of a black box is a black box."""
        return self.inner.differentiable

    @property
    def queries(self) -> int | None:
        return self.inner.queries

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.inner.logits(images)
        return torch.stack([logits[:, group].logsumexp(dim=1) for group in self.members], dim=1)


def _takes_no_required_arguments(func: Callable) -> bool:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in signature.parameters.values())
