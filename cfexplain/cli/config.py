"""The command line's configuration: a TOML file, overridden by flags, turned into objects.

A configuration has sections ``[generator]``, ``[analyzers]``, ``[learn]``, ``[classifier]``
(with ``[classifier.preprocessing]``) and ``[audit]``; see ``docs/cli.md`` for every key. Specs:

* generator: a checkpoint path (StyleGAN2, any supported format) or ``"zoo:dcgan"``;
* analyzers: ``stack = "facemesh"`` (the zoo's FaceMesh; no files) or ``"bisenet_fan"`` with
  ``parser`` (BiSeNet ``79999_iter.pth``) and ``landmarks`` (FAN ``.pth.tar`` or TorchScript ``.zip``);
* classifier: a TorchScript file, an ONNX file (``.onnx``), ``"package.module:callable"``, or
  ``"zoo:gender"`` / ``"zoo:age"``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._options import cli_fields
from ..audit.settings import AuditSettings
from ..counterfactual.settings import SearchSettings
from ..errors import CheckpointNotFoundError, InputError

if TYPE_CHECKING:
    from ..classifiers import Classifier

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["load_config", "merge", "make_generator", "make_analyzers", "make_classifier", "make_semantics"]

def _settings_types(settings_class: type) -> dict[str, str]:
    """The configuration types of a settings dataclass's command-line fields (from their metadata)."""
    names = {bool: "bool", int: "int", float: "number", str: "str"}
    return {field.name: names[field.metadata["type"]] for field in cli_fields(settings_class)}


_PHOTO_KEYS = {"images": "str", "multiple_faces": "str", "skip_unusable": "bool", "inversion_steps": "int"}
_FACES = {"subspaces": "str", "faces": "int", "seed": "int", "target": "target", "out": "str"}
KEYS: dict[str, dict[str, str]] = {
    "runtime": {"threads": "threads"},
    "generator": {"checkpoint": "str", "device": "str", "sha256": "str", "network": "str"},
    "analyzers": {"stack": "str", "parser": "str", "landmarks": "str"},
    "learn": {"space": "str", "semantics": "strs", "samples": "int", "seed": "int", "resolution": "int", "method": "str",
              "checkpoint_dir": "str", "out": "str"},
    "classifier": {"model": "str", "labels": "strs", "kind": "str", "scores": "str", "threshold": "number",
                   "layout": "str", "output": "str", "preprocessing": "table"},
    "explain": {**_FACES, **_PHOTO_KEYS, **_settings_types(SearchSettings)},
    "audit": {**_FACES, "faces": "faces", "fail_if": "strs", **_PHOTO_KEYS, "include_unfaithful": "bool",
              "checkpoint_dir": "str", **_settings_types(SearchSettings), **_settings_types(AuditSettings)},
}
"""Every configuration key of every section, with its type: ``str``, ``int``, ``number`` (an int
or a float), ``bool``, ``strs`` (a list of strings), ``faces`` (an int or ``"auto"``), ``target``
(a class name or index), ``table``, ``threads`` (an int ≥ 1 or ``"auto"``)."""
PREPROCESSING_KEYS = {"size": "size", "crop": "numbers", "value_range": "numbers", "mean": "numbers", "std": "numbers",
                      "channel_order": "str", "interpolation": "str", "antialias": "bool"}
_TYPE_WORDS = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
               "strs": "a list of strings", "numbers": "a list of numbers", "faces": "an integer or \"auto\"",
               "target": "a class name or index", "table": "a table", "size": "an integer or [height, width]",
               "threads": "an integer ≥ 1 or \"auto\""}


def _has_type(value: Any, kind: str) -> bool:
    integer = isinstance(value, int) and not isinstance(value, bool)
    number = integer or isinstance(value, float)
    return {"str": isinstance(value, str), "int": integer, "number": number, "bool": isinstance(value, bool),
            "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
            "numbers": isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in value),
            "faces": integer or value == "auto", "target": integer or isinstance(value, str),
            "size": integer or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                                 for v in value)),
            "table": isinstance(value, dict), "threads": (integer and value >= 1) or value == "auto"}[kind]


def _check_types(file: Path, where: str, values: Mapping[str, Any], types: Mapping[str, str]) -> None:
    stray = set(values) - set(types)
    if stray:
        raise InputError(f"{file}: unknown keys {sorted(stray)} in [{where}]; keys are {list(types)}")
    for key, value in values.items():
        if not _has_type(value, types[key]):
            raise InputError(f"{file}: [{where}] {key} must be {_TYPE_WORDS[types[key]]}, got {value!r} "
                             f"({type(value).__name__})")


SECTIONS = tuple(KEYS)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system, say: not a file here
        return False


def load_config(path: str | None) -> dict[str, Any]:
    """The TOML configuration at ``path`` (``{}`` for ``None``); unknown sections are refused."""
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise CheckpointNotFoundError(f"no configuration file at {file}")
    try:
        config = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file} is not valid TOML: {exc}") from None
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise InputError(f"{file}: unknown sections {sorted(unknown)}; sections are {list(SECTIONS)}")
    for section, values in config.items():
        if not isinstance(values, dict):
            raise InputError(f"{file}: [{section}] must be a table of keys")
        _check_types(file, section, values, KEYS[section])
    _check_types(file, "classifier.preprocessing", config.get("classifier", {}).get("preprocessing", {}),
                 PREPROCESSING_KEYS)
    for section, key in (("generator", "checkpoint"), ("analyzers", "parser"), ("analyzers", "landmarks"),
                         ("classifier", "model"), ("audit", "subspaces"), ("explain", "subspaces")):
        value = config.get(section, {}).get(key)  # a spec such as zoo:dcgan is not a path: only existing files move
        if isinstance(value, str) and not Path(value).is_absolute() and _exists(file.parent / value):
            config[section][key] = str(file.parent / value)  # paths are relative to the configuration file
    for section, key in (("learn", "out"), ("learn", "checkpoint_dir"), ("explain", "out"), ("explain", "images"),
                         ("audit", "out"), ("audit", "checkpoint_dir"), ("audit", "images")):
        value = config.get(section, {}).get(key)  # always paths, often still to be made
        if isinstance(value, str) and not Path(value).is_absolute():
            config[section][key] = str(file.parent / value)
    return config


def merge(config: Mapping[str, Any], section: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The section's settings with command-line flags (not ``None``) taking precedence."""
    merged = dict(config.get(section, {}))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


def make_generator(settings: Mapping[str, Any]):
    """A generator from ``checkpoint`` (path or ``zoo:dcgan``) and ``device``."""
    from .._device import check_device
    from .. import zoo
    from ..generators import load_generator

    spec, device = settings.get("checkpoint"), str(check_device(settings.get("device", "cpu")))
    if not spec:
        raise InputError("no generator: give --generator PATH (or zoo:dcgan), or [generator] checkpoint in the config")
    if spec == "zoo:dcgan":
        if settings.get("sha256"):
            raise InputError("--generator-sha256 pins a checkpoint file; zoo:dcgan is verified by the zoo itself")
        if settings.get("network", "ema") != "ema":
            raise InputError("--generator-network chooses a network of a checkpoint; zoo:dcgan has one")
        return zoo.dcgan_faces(device=device)
    if spec.startswith("zoo:"):
        raise InputError(f"unknown zoo generator {spec!r}; the zoo has zoo:dcgan")
    return load_generator(spec, device=device, sha256=settings.get("sha256"), network=settings.get("network") or "ema")


def make_analyzers(settings: Mapping[str, Any], device: str = "cpu"):
    """``(stack, parser, landmarks)`` from ``stack`` and, for ``bisenet_fan``, the two checkpoints."""
    from .._device import check_device
    from .. import zoo
    from ..analyzers import BiSeNetParser, FANLandmarks

    stack, device = settings.get("stack", "facemesh"), str(check_device(device))
    if stack == "facemesh":
        return stack, zoo.facemesh_parser(device=device), zoo.facemesh(device=device)
    if stack == "bisenet_fan":
        parser, landmarks = settings.get("parser"), settings.get("landmarks")
        if not parser or not landmarks:
            raise InputError("the bisenet_fan stack needs --parser (BiSeNet 79999_iter.pth) and --landmarks (FAN 2DFAN4)")
        return stack, BiSeNetParser.from_checkpoint(parser, device=device), FANLandmarks.from_checkpoint(landmarks, device=device)
    raise InputError(f"unknown analyzer stack {stack!r}; stacks: facemesh, bisenet_fan")


def make_semantics(stack: str, parser, landmarks, names: list[str] | None):
    """The preset semantics of ``stack`` ("facemesh" or "bisenet_fan") on the given analyzers,
    restricted to ``names`` where given."""
    from ..presets import bisenet_fan_semantics, facemesh_semantics

    build = facemesh_semantics if stack == "facemesh" else bisenet_fan_semantics
    return build(parser, landmarks, names=names or None)


def make_classifier(settings: Mapping[str, Any], device: str = "cpu", *, black_box: bool = False) -> Classifier:
    """A :class:`Classifier` from ``model`` and its ``labels``, ``kind``, ``scores``,
    ``threshold``, ``[classifier.preprocessing]`` and, for an ONNX file, ``layout`` and ``output``
    (the graph output holding the scores); with ``black_box``, an ONNX file is queried through
    onnxruntime instead of converted."""
    from .._device import check_device
    from ..classifiers import IDENTITY, Classifier, OutputSpec, Preprocessing
    from ..graphs import load_onnx
    from .. import zoo

    spec, device = settings.get("model"), str(check_device(device))
    if not spec:
        raise InputError("no classifier: give --classifier (TorchScript or ONNX file, module:callable, zoo:gender or "
                         "zoo:age)")
    if spec == "zoo:gender":
        return zoo.gender_classifier(device=device)
    if spec == "zoo:age":
        return zoo.age_classifier(device=device)
    if spec.startswith("zoo:"):
        raise InputError(f"unknown zoo classifier {spec!r}; the zoo has zoo:gender and zoo:age")
    is_onnx = Path(spec).suffix.lower() == ".onnx"
    is_file = Path(spec).suffix in (".pt", ".pth", ".zip", ".ts", ".onnx") or Path(spec).is_file()
    if is_file and not Path(spec).is_file():
        raise CheckpointNotFoundError(f"no classifier file at {spec}")
    if is_onnx:
        load_onnx(spec)  # a damaged file is refused before its labels are asked for
    elif is_file:
        Classifier.check_torchscript_file(spec)
    if not is_onnx and (settings.get("layout") or settings.get("output")):
        raise InputError("layout and output are settings of an ONNX classifier (a .onnx file)")
    labels = settings.get("labels")
    if not labels:
        raise InputError("the classifier needs its labels (--labels or [classifier] labels)")
    kind, scores = settings.get("kind", "softmax"), settings.get("scores", "logits")
    threshold = float(settings.get("threshold", 0.5))
    if kind == "softmax":
        output = OutputSpec.softmax(labels, scores=scores)
    elif kind == "sigmoid":
        output = OutputSpec.sigmoid(labels, scores=scores, threshold=threshold)
    elif kind == "heads":
        output = OutputSpec.heads(labels, scores=scores, threshold=threshold)
    else:
        raise InputError(f"classifier kind must be softmax, sigmoid or heads, got {kind!r}")
    pre = {"value_range": IDENTITY.value_range, **settings.get("preprocessing", {})}  # the generator's range unless told
    for key in ("crop", "value_range", "mean", "std"):
        if key in pre:
            pre[key] = tuple(pre[key])
    if isinstance(pre.get("size"), list):
        pre["size"] = tuple(pre["size"])
    try:
        preprocessing = Preprocessing(**pre)
    except TypeError as exc:
        raise InputError(f"[classifier.preprocessing]: {exc}") from exc
    if is_onnx:
        return Classifier.from_onnx(spec, device=device, preprocessing=preprocessing, output=output,
                                    layout=settings.get("layout"), output_name=settings.get("output"),
                                    black_box=black_box)
    if is_file:
        return Classifier.from_torchscript(spec, device=device, preprocessing=preprocessing, output=output)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `module:callable` from the working directory, as `python -m` would
    return Classifier.from_callable(spec, preprocessing=preprocessing, output=output)
