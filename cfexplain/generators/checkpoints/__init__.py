"""Reading StyleGAN2 and StyleGAN3 checkpoints of every common format behind one call, :func:`load_generator`.

Formats (detected from the file's content, not its name):

* NVlabs stylegan2-ada-pytorch / stylegan3 ``.pkl`` (StyleGAN2 networks, and StyleGAN3's alias-free
  T and R networks) — a plain pickle, read with an allow-list unpickler that never runs code from
  the file;
* rosinality/stylegan2-pytorch ``.pt`` — converted weights or full training checkpoints, read with
  ``torch.load(weights_only=True)``;
* official TensorFlow StyleGAN2 ``.pkl`` (stylegan2 and stylegan2-ada TF releases) — same
  allow-list unpickler;
* a plain ``torch.save`` of a StyleGAN2 generator state dict in NVlabs or rosinality key layout.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..._device import check_device
from ..._io import sha256_file
from ..._torch_files import read_torch_file
from ...errors import (
    CfexplainError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    InputError,
    UnknownCheckpointFormatError,
    describe_exception,
)
from ..base import Generator
from ._canonical import NETWORKS, build_generator, read_state_dict
from ._safe_pickle import safe_load_pickle
from .nvlabs import is_nvlabs, read_nvlabs
from .nvlabs_stylegan3 import build_stylegan3, is_nvlabs_stylegan3, read_nvlabs_stylegan3
from .rosinality import is_rosinality_state, read_rosinality
from .tensorflow import is_tensorflow, read_tensorflow

__all__ = ["CheckpointFormat", "FORMATS", "NETWORKS", "load_generator", "register_format", "sniff_format"]

_ZIP_MAGIC = b"PK\x03\x04"
# A legacy (non-zip) torch.save file starts with a pickled long: torch's magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_ACCEPTED = (
    "an NVlabs stylegan2-ada-pytorch/stylegan3 .pkl, a rosinality stylegan2-pytorch .pt, "
    "an official TensorFlow StyleGAN2 .pkl, or a torch.save'd StyleGAN2 state dict"
)


def sniff_format(path: str | os.PathLike) -> str:
    """``"torch"`` (a ``torch.save`` file, zip or legacy) or ``"pickle"`` from the first bytes.

    Raises:
        UnknownCheckpointFormatError: neither.
    """
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    raise UnknownCheckpointFormatError(
        f"{path}: not a checkpoint format cfexplain reads (starts with {head[:8]!r}); expected {_ACCEPTED}"
    )


def _load_torch_file(path: Path) -> Any:
    return read_torch_file(path, path, safe_globals=[argparse.Namespace])


@dataclass(frozen=True)
class CheckpointFormat:
    """One checkpoint format a generator family can be read from.

    Attributes:
        name: recorded in the generator's provenance (``"nvlabs"``, ``"rosinality"`` …).
        container: ``"torch"`` (a ``torch.save`` file, read with ``weights_only``) or ``"pickle"``
            (read with the allow-list unpickler).
        detects: whether the loaded object is in this format (looked at in registration order).
        read: ``(object, network)`` → ``(state dict in the family's canonical layout, configuration
            hints)``; ``network`` is one of :data:`NETWORKS` (``"ema"``: the moving-average
            generator; ``"training"``: the training one, refused where the file has no such
            distinction).
        build: ``(state, hints, provenance, device)`` → the generator, its configuration inferred
            from the state and the hints.
    """

    name: str
    container: str
    detects: Callable[[Any], bool]
    read: Callable[[Any, str], tuple[dict, Any]]
    build: Callable[..., Generator]


FORMATS: list[CheckpointFormat] = [
    CheckpointFormat("rosinality", "torch", lambda obj: isinstance(obj, dict) and ("g_ema" in obj or is_rosinality_state(obj)),
                     read_rosinality, build_generator),
    CheckpointFormat("state_dict", "torch", lambda obj: isinstance(obj, dict) and "mapping.fc0.weight" in obj,
                     read_state_dict, build_generator),
    CheckpointFormat("nvlabs-stylegan3", "pickle", is_nvlabs_stylegan3, read_nvlabs_stylegan3, build_stylegan3),
    CheckpointFormat("nvlabs", "pickle", is_nvlabs, read_nvlabs, build_generator),
    CheckpointFormat("tensorflow", "pickle", is_tensorflow, read_tensorflow, build_generator),
]
"""The registered formats, in detection order (:func:`register_format` adds one)."""


def register_format(format: CheckpointFormat, *, first: bool = False) -> None:
    """Make :func:`load_generator` read ``format`` too (before the others with ``first``): a new
    generator family registers its readers here and needs no change elsewhere."""
    FORMATS.insert(0 if first else len(FORMATS), format)


def _read(path: Path, network: str) -> tuple[CheckpointFormat, dict, Any]:
    kind = sniff_format(path)
    if kind == "torch":
        obj = _load_torch_file(path)
    else:
        with open(path, "rb") as f:
            obj = safe_load_pickle(f)
    for format in FORMATS:
        if format.container == kind and format.detects(obj):
            return (format, *format.read(obj, network))
    found = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    what = "a torch file, but not a StyleGAN2 generator checkpoint" if kind == "torch" else \
        "a pickle, but not a StyleGAN2 checkpoint"
    raise UnknownCheckpointFormatError(f"{path}: {what} (found {found}); expected {_ACCEPTED}")


def load_generator(path: str | os.PathLike, *, device: torch.device | str = "cpu",
                   sha256: str | None = None, network: str = "ema") -> Generator:
    """Load a StyleGAN2 or StyleGAN3 generator from a checkpoint file of any supported format.

    The format and the network configuration (resolution, latent sizes, mapping depth, channels)
    are read from the file; nothing is passed by hand. Pickles are read without running any code
    from them. For NVlabs pickles the moving-average generator ``G_ema`` is used, for TensorFlow
    pickles ``Gs``, for rosinality files ``g_ema``. NVlabs StyleGAN3 pickles
    (``stylegan3-{t,r}-*.pkl``) give a :class:`~cfexplain.generators.StyleGAN3Generator`.

    Args:
        path: the checkpoint file.
        device: where to put the generator (checked first: an unusable device is an
            :class:`~cfexplain.errors.InputError`).
        sha256: pin the file: the hex sha256 it must have (CLI ``--generator-sha256``); another
            file is refused before anything in it is read.
        network: ``"ema"`` (default: the moving-average generator, ``G_ema``/``Gs``/``g_ema``,
            what is published and sampled from) or ``"training"`` (``G``/``g``, in snapshots
            that hold both; CLI ``--generator-network``).

    Every loaded generator is checked for finite weights and finite probe images in the modes
    users draw in (:func:`check_finite_generator`), so that a damaged file is refused by name
    instead of drawing NaN faces later.

    Returns:
        A :class:`~cfexplain.generators.StyleGAN2Generator` (or ``StyleGAN3Generator``) in eval
        mode with frozen weights;
        ``provenance`` holds the path, the file's sha256 and the detected format.

    Raises:
        CheckpointNotFoundError: the path does not exist or is not a readable file.
        UnknownCheckpointFormatError: not a supported format.
        UnsafeCheckpointError: a pickle asks for a global outside the allow-list.
        CorruptCheckpointError: truncated or damaged file, non-finite weights or probe image, or
            a sha256 other than the pinned one.
        UnsupportedModelError: conditional or non-"skip" generators, StyleGAN3 state dicts without
            their pickle's configuration.
        ShapeError: weights whose shapes do not fit a StyleGAN2 network.

    Example:
        >>> G = cfexplain.load_generator("stylegan2-ffhq-config-f.pkl")  # doctest: +SKIP
        >>> images = G.synthesize(G.sample(4, space="w+", seed=0, truncation=0.7))  # doctest: +SKIP
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"load_generator takes a checkpoint's path (a str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint file at {path}")
    if not os.access(path, os.R_OK):
        raise CheckpointNotFoundError(f"the checkpoint file {path} is not readable")
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(f"{path}: the file is empty")
    device = check_device(device)
    if network not in NETWORKS:
        raise InputError(f"network must be one of {NETWORKS}, got {network!r}")
    digest = sha256_file(path)
    if sha256 is not None and digest != _pinned_digest(sha256):
        raise CorruptCheckpointError(f"{path}: sha256 {digest} is not the pinned {sha256.strip().lower()} "
                                     f"(another or a damaged file)")
    try:
        format, state, hints = _read(path, network)
        provenance = {"path": str(path), "sha256": digest, "format": format.name, "network": network}
        generator = format.build(state, hints, provenance=provenance, device=device)
        check_finite_generator(generator, path)
    except CfexplainError as exc:
        if str(path) in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from exc  # every file-format error names the file
    except Exception as exc:  # noqa: BLE001 - damaged content that a reader did not foresee
        raise CorruptCheckpointError(f"{path}: the checkpoint is damaged ({describe_exception(exc)})") from exc
    return generator


def _pinned_digest(sha256: str) -> str:
    if not isinstance(sha256, str) or len(sha256.strip()) != 64 or any(c not in "0123456789abcdef"
                                                                       for c in sha256.strip().lower()):
        raise InputError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return sha256.strip().lower()


PROBE_FACES = 2
"""Faces of each load-time probe (:func:`check_finite_generator`)."""


def check_finite_generator(generator: Generator, path: str | os.PathLike) -> None:
    """Refuse a generator with a NaN/inf weight or buffer, or that draws a non-finite image in one
    of the modes users draw in: :data:`PROBE_FACES` faces from ``z`` with constant noise, and the
    same faces truncated (ψ = 0.7, which scales towards the stored average ``w``) with random
    noise (which the stored noise strengths scale). A damaged average or noise strength makes NaN
    only there. :class:`~cfexplain.errors.CorruptCheckpointError` names the file and what failed."""
    for name, tensor in [*generator.named_parameters(), *generator.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CorruptCheckpointError(f"{path}: the weight {name!r} holds NaN or infinite values (a damaged file)")
    try:
        generator.check_statistics()
    except ValueError as exc:
        raise CorruptCheckpointError(f"{path}: {exc} (a damaged file)") from exc
    probes = [("constant noise", generator.sample(PROBE_FACES, seed=0), "z", "const")]
    if "w" in generator.spaces:
        probes.append(("truncation 0.7 and random noise", generator.sample(PROBE_FACES, space="w", seed=0,
                                                                           truncation=0.7), "w", "random"))
    for mode, codes, space, noise in probes:
        with torch.no_grad():
            image = generator.synthesize(codes, space=space, noise_mode=noise, noise_seed=0)
        if not bool(torch.isfinite(image).all()):
            raise CorruptCheckpointError(f"{path}: the generator draws NaN or infinite images with {mode} (a damaged "
                                         f"file: its stored average latent or noise strengths are out of range)")
