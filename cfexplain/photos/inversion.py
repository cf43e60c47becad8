"""GAN inversion: the latent code whose image best reconstructs a photo.

:func:`invert` optimises one code per image with Adam, in batches, and keeps the best code seen.
The code is parametrised relative to the spread of sampled codes (``code = start + σ ⊙ δ``, with
``σ`` the per-coordinate standard deviation of sampled codes, 1 where sampled codes do not vary,
as the channel styles), so one learning rate suits every space. The schedule is the StyleGAN2
projector's (Karras et al., 2020, appendix D): the learning rate ramps up over the first 5 % of
the steps and down (cosine) over the last 25 %, and Gaussian noise of 5 % of ``σ`` (shrinking to 0
over the first 75 %, quadratically) is added to the code in early steps to escape poor basins.

The start is the best of ``starts`` sampled codes (the lowest pixel loss for each image): a
single fixed start, as the code mean, lands far from many photos in entangled spaces.

Loss terms (:class:`InversionLoss`), all computable offline (no perceptual network to download):

* ``pixel``: mean squared error in ``[-1, 1]`` (what PSNR measures);
* ``multiscale``: the same at ½, ¼ and ⅛ resolution (area-averaged), which weights coarse
  structure (face shape, lighting) above texture;
* ``landmarks``: FaceMesh points of the reconstruction against the photo's, in units of the
  image side (the face's geometry, which pixel losses under-weight);
* ``prior``: the code's squared distance from the start of the space (``‖δ‖²`` in ``σ`` units,
  over the code's length): keeps codes where the generator was trained, so edits stay realistic;
* ``noise`` (StyleGAN2 with ``optimize_noise``): the projector's noise regulariser (squared
  autocorrelation at shifts of one pixel, over a pyramid), keeping the noise maps noise-like.

docs/benchmarks.md ("Inversion") measures what each term buys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._integrity import seal, verify
from .._io import reading_document
from .._torch_files import read_torch_file, write_torch_file
from .._version import software_provenance
from ..errors import CorruptCheckpointError, InputError, ShapeError
from ..generators.base import Generator
from .._batching import in_fixed_batches, padded
from .._defaults import INVERSION_STEPS

__all__ = ["InversionLoss", "InversionResult", "invert", "psnr"]

INVERSION_FORMAT_VERSION = 2


def psnr(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N,)`` peak signal-to-noise ratio in dB of images in ``[-1, 1]`` (peak-to-peak 2)."""
    mse = (images.float() - targets.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


@dataclass(frozen=True)
class InversionLoss:
    """Weights of the inversion's loss terms (module docstring); 0 turns a term off.

    The default is the pixel term with a small prior (and the noise regulariser when StyleGAN2
    noise maps are optimised): on real photos the multiscale and landmark terms bought no
    reconstruction quality and no surviving decisions, and the landmark term costs 5× the time
    (docs/benchmarks.md, "Inversion of real photos").
    """

    pixel: float = 1.0
    multiscale: float = 0.0
    landmarks: float = 0.0
    prior: float = 1e-3
    noise: float = 1e5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"loss weight {name} must be a finite number ≥ 0, got {value!r}")
        if self.pixel == 0 and self.multiscale == 0 and self.landmarks == 0:
            raise InputError("at least one of the pixel, multiscale and landmarks weights must be positive")


def _multiscale(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    total, count = images.new_zeros(images.shape[0]), 0
    a, b = images, targets
    for _ in range(3):
        if a.shape[-1] < 8:
            break
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        total = total + (a - b).square().flatten(1).mean(1)
        count += 1
    return total / max(count, 1)


def _noise_penalty(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per item: squared autocorrelation at one-pixel shifts of each noise map, over a pyramid down to 8²."""
    total = maps[0].new_zeros(maps[0].shape[0])
    for noise in maps:
        x = noise
        while True:
            total = total + (x * x.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (x * x.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


def _fingerprint(images: torch.Tensor, settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(images.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass
class InversionResult:
    """The outcome of :func:`invert`.

    Attributes:
        codes: ``(N, *latent_shape(space))``, the codes found, in ``space``.
        space: their latent space.
        targets: ``(N, 3, R, R)`` the images inverted (the aligned photos).
        reconstructions: ``(N, 3, R, R)`` the images of ``codes`` (as the explainer renders them).
        psnr: ``(N,)`` of each reconstruction, in dB.
        losses: per loss term, ``(N,)`` its value at the best step (unweighted).
        names: one name per image.
        settings, provenance: how it was made.
        noise: StyleGAN2 with ``optimize_noise``: the optimised noise maps, one ``(N, 1, r, r)`` per
            layer (counterfactuals are rendered with the generator's own noise; see ``invert``).
    """

    codes: torch.Tensor
    space: str
    targets: torch.Tensor
    reconstructions: torch.Tensor
    psnr: torch.Tensor
    losses: dict[str, torch.Tensor]
    names: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    noise: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def summary(self) -> str:
        """One line: how many images, the PSNR's median and range."""
        values = self.psnr.double()
        return (f"{len(self)} images inverted in {self.space!r}: PSNR median {float(values.median()):.1f} dB "
                f"(min {float(values.min()):.1f}, max {float(values.max()):.1f})")

    def save(self, path: str | os.PathLike) -> Path:
        """Write to one ``.pt`` file (tensors and JSON-able metadata only, sealed with an integrity
        manifest as every saved artefact is); :meth:`load` reads it."""
        path = Path(path)
        tensors = {"codes": self.codes.cpu(), "targets": self.targets.cpu(),
                   "reconstructions": self.reconstructions.cpu(), "psnr": self.psnr.cpu(),
                   **{f"loss:{name}": value.cpu() for name, value in self.losses.items()},
                   **{f"noise:{i}": value.cpu() for i, value in enumerate(self.noise or [])}}
        document = {"format": INVERSION_FORMAT_VERSION, "space": self.space, "names": list(self.names),
                    "losses": list(self.losses), "noise": None if self.noise is None else len(self.noise),
                    "settings": json.loads(json.dumps(self.settings, default=str)),
                    "provenance": json.loads(json.dumps(self.provenance, default=str))}
        write_torch_file(path, {"document": seal(document, tensors), "tensors": tensors})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "InversionResult":
        """Read a file written by :meth:`save` (its manifest checked: an edited file is refused)."""
        if not Path(path).is_file():
            raise InputError(f"{path}: no such inversion file")
        data = read_torch_file(Path(path), f"{path} (an inversion file)")
        document = data.get("document") if isinstance(data, dict) else None
        found = document.get("format") if isinstance(document, dict) else data.get("format") if isinstance(data, dict) \
            else None
        if found != INVERSION_FORMAT_VERSION:
            raise InputError(f"{path}: an inversion file of format {found!r}; this cfexplain reads format "
                             f"{INVERSION_FORMAT_VERSION} (invert the photos again)")
        tensors = data.get("tensors")
        if not isinstance(tensors, dict):
            raise CorruptCheckpointError(f"{path}: damaged inversion file (no tensors)")
        verify(document, tensors, Path(path), "inversion file")
        with reading_document(path, "inversion file"):
            rows = [tensors[key] for key in ("codes", "targets", "reconstructions", "psnr")]
            if len({len(t) for t in rows}) != 1 or len(document["names"]) != len(rows[0]):
                raise ValueError("codes, targets, reconstructions, psnr and names must be of one length")
            noise = None if document["noise"] is None else [tensors[f"noise:{i}"] for i in range(int(document["noise"]))]
            return cls(tensors["codes"], document["space"], tensors["targets"], tensors["reconstructions"],
                       tensors["psnr"], {name: tensors[f"loss:{name}"] for name in document["losses"]},
                       list(document["names"]), document["settings"], document["provenance"], noise)


class _Objective:
    """The loss of a batch of codes against its targets: per item, weighted and per term."""

    def __init__(self, generator: Generator, space: str, weights: InversionLoss, landmarks) -> None:
        self.generator, self.space, self.weights, self.landmarks = generator, space, weights, landmarks

    def terms(self, images: torch.Tensor, targets: torch.Tensor, target_points: torch.Tensor | None,
              delta: torch.Tensor, noise: list[torch.Tensor] | None) -> dict[str, torch.Tensor]:
        w, terms = self.weights, {}
        terms["pixel"] = (images - targets).square().flatten(1).mean(1)
        if w.multiscale:
            terms["multiscale"] = _multiscale(images, targets)
        if w.landmarks and target_points is not None:
            points = self.landmarks.landmarks(images)
            terms["landmarks"] = ((points - target_points) / images.shape[-1]).square().sum(-1).mean(-1)
        if w.prior:
            terms["prior"] = delta.square().mean(1)
        if noise is not None:
            terms["noise"] = _noise_penalty(noise)
        return terms

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(getattr(self.weights, name) * value for name, value in terms.items())


def _spread(generator: Generator, space: str, samples: int = 512) -> torch.Tensor:
    """Per-coordinate spread (1 where sampled codes do not vary) of sampled flat codes."""
    with torch.no_grad():
        std = generator.sample(samples, space=space, seed=7907).reshape(samples, -1).double().std(0)
    return torch.where(std > 1e-8, std, torch.ones_like(std)).float()


def _schedule(step: int, steps: int, lr: float) -> float:
    t = step / max(steps, 1)
    ramp = min(1.0, (1.0 - t) / 0.25)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / 0.05)


RECONSTRUCTION_BATCH = 16
"""Codes synthesized together for the reconstructions (a fixed size: see :mod:`cfexplain._batching`)."""


def invert(generator: Generator, images: torch.Tensor, *, space: str | None = None, steps: int = INVERSION_STEPS,
           lr: float = 0.1, starts: int = 16, loss: InversionLoss | None = None, batch_size: int = 16,
           optimize_space: str | None = None, optimize_noise: bool = False, landmarks=None,
           names: list[str] | None = None, seed: int = 0, checkpoint: str | os.PathLike | None = None,
           progress: bool = False) -> InversionResult:
    """Project ``images`` into ``generator``'s latent ``space`` (module docstring).

    Args:
        generator: the generator to invert.
        images: ``(N, 3, R, R)`` in ``[-1, 1]`` at the generator's resolution, framed as its faces
            are (:func:`~cfexplain.photos.align_faces` does both).
        space: the space of the returned codes (default: the generator's default space; pass the
            subspaces' space to explain the photos).
        steps: Adam steps per batch.
        lr: peak learning rate, in units of the sampled codes' spread.
        starts: sampled codes tried as starts; each image starts from its best.
        loss: the loss weights (default :class:`InversionLoss`).
        batch_size: images optimised together. Every batch runs at this size (the last one padded
            with copies of its last image), and each image's random streams are seeded from its
            pixels, so that an image's result does not depend on the other images or their order.
        optimize_space: the space optimised in (default ``space``; StyleGAN2's ``"s"`` codes are
            optimised in ``"w+"`` and converted). Must convert to ``space``.
        optimize_noise: StyleGAN2 only: also optimise per-image noise maps (the projector's
            practice, with the ``noise`` regulariser). The counterfactuals are rendered with the
            generator's own constant noise, so ``reconstructions`` and ``psnr`` are those of that
            rendering; the optimised maps are returned in ``noise``.
        landmarks: the landmark detector of the ``landmarks`` term (default
            :func:`cfexplain.zoo.facemesh` when that weight is positive).
        names: one name per image (default ``images[i]``).
        seed: seed of the starts and the code noise.
        checkpoint: a file to keep finished batches and the running batch's state in; a call with
            the same images and settings resumes from it. Removed when the inversion completes.
        progress: show a progress bar.

    Returns:
        An :class:`InversionResult`.
    """
    weights = loss if loss is not None else InversionLoss()
    space = space if space is not None else generator.default_space
    generator.check_space(space)
    optimize_space = optimize_space if optimize_space is not None else generator.inversion_space(space)
    generator.check_conversion(optimize_space, space)
    if images.ndim != 4 or images.shape[-1] != generator.resolution or images.shape[-2] != generator.resolution:
        raise ShapeError(f"images must be (N, C, {generator.resolution}, {generator.resolution}) (the generator's "
                         f"resolution; align_faces makes them), got {tuple(images.shape)}")
    if len(images) == 0:
        raise InputError("no images to invert")
    for name, value, least in (("steps", steps, 1), ("starts", starts, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{name} must be an int ≥ {least}, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a positive number, got {lr!r}")
    noise_maps = generator.noise_maps() if optimize_noise else None
    if optimize_noise and not noise_maps:
        raise InputError("optimize_noise needs a generator with noise inputs (StyleGAN2 has per-layer noise)")
    names = list(names) if names is not None else [f"images[{i}]" for i in range(len(images))]
    if len(names) != len(images):
        raise InputError(f"names has {len(names)} entries for {len(images)} images")
    if weights.landmarks and landmarks is None:
        from .. import zoo

        landmarks = zoo.facemesh(device=generator.device)
    settings = {"space": space, "optimize_space": optimize_space, "steps": steps, "lr": lr, "starts": starts,
                "loss": asdict(weights), "batch_size": batch_size, "optimize_noise": optimize_noise, "seed": seed}
    state = _Checkpoint(checkpoint, _fingerprint(images, {**settings, "random_streams_on": generator.device.type}))
    objective = _Objective(generator, optimize_space, weights, landmarks)
    sigma = _spread(generator, optimize_space)
    device, dtype = generator.device, generator.dtype
    sigma = sigma.to(device, dtype)
    targets_all = images.to(device, dtype)
    candidates = generator.sample(starts, space=optimize_space, seed=seed).reshape(starts, -1).to(device, dtype)
    with torch.no_grad():
        candidate_images = torch.cat([generator.synthesize(c.reshape(-1, *generator.latent_shape(optimize_space)),
                                                           space=optimize_space) for c in candidates.split(batch_size)])
    if candidate_images.shape[1:] != images.shape[1:]:
        raise ShapeError(f"images must be {tuple(candidate_images.shape[1:])} per item, as the generator makes them, "
                         f"got {tuple(images.shape[1:])}")
    batches = list(range(0, len(images), batch_size))
    with tqdm(total=len(batches) * steps, desc="inverting", unit="step", disable=not progress) as bar:
        for b, start in enumerate(batches):
            if state.finished(b):
                bar.update(steps)
                continue
            targets = targets_all[start:start + batch_size]
            seeds = [_item_seed(seed, target) for target in targets]
            seeds += seeds[-1:] * (batch_size - len(seeds))  # the padding repeats the last item
            found = _invert_batch(generator, objective, padded(targets, batch_size), candidates, candidate_images,
                                  sigma, steps, lr, seeds, noise_maps, state, b, bar)
            state.store(b, _first_items(found, len(targets)))
    return _assemble(generator, state, len(batches), space, optimize_space, images, names, settings)


def _item_seed(seed: int, target: torch.Tensor) -> int:
    """The seed of an image's random streams: from the inversion's seed and the image's pixels,
    so that a photo draws the same jitter wherever it stands in a folder."""
    digest = hashlib.sha256(str(seed).encode() + target.detach().float().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:7], "little")


def _first_items(found: dict[str, Any], count: int) -> dict[str, Any]:
    """A batch's results without the padding."""
    return {"codes": found["codes"][:count], "terms": {k: v[:count] for k, v in found["terms"].items()},
            "noise": None if found["noise"] is None else [n[:count] for n in found["noise"]]}


def _invert_batch(generator: Generator, objective: _Objective, targets: torch.Tensor, candidates: torch.Tensor,
                  candidate_images: torch.Tensor, sigma: torch.Tensor, steps: int, lr: float, seeds: list[int],
                  noise_maps, state: "_Checkpoint", batch: int, bar) -> dict[str, Any]:
    """Optimise one batch (of the full batch size); every item has its own random streams
    (``seeds``), so that an image's result does not depend on the batch it is in."""
    shape = generator.latent_shape(objective.space)
    with torch.no_grad():
        distance = torch.cdist(targets.flatten(1), candidate_images.flatten(1))
        start = candidates[distance.argmin(dim=1)]
        target_points = objective.landmarks.landmarks(targets) if objective.landmarks is not None \
            and objective.weights.landmarks else None
    delta = torch.zeros_like(start, requires_grad=True)
    params = [delta]
    noise = None
    if noise_maps:  # start from the generator's own noise, the one counterfactuals are rendered with
        noise = [m.detach()[None, None].expand(len(targets), 1, -1, -1).clone().to(start).requires_grad_(True)
                 for m in noise_maps]
        params += noise
    # on the device, so that no step draws on the CPU; a GPU's streams differ from the CPU's, so a
    # checkpoint resumes on the device type that wrote it (the fingerprint says which)
    streams = [torch.Generator(device=start.device).manual_seed(s + 1) for s in seeds]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    first, best = 0, None
    resumed = state.running(batch)
    if resumed is not None:
        delta.data.copy_(resumed["delta"].to(delta))
        if noise is not None:
            for n, saved in zip(noise, resumed["noise"]):
                n.data.copy_(saved.to(n))
        optimizer.load_state_dict(resumed["optimizer"])
        first, best = resumed["step"], resumed["best"]
        for stream, saved in zip(streams, resumed["streams"]):
            stream.set_state(saved)
        bar.update(first)
    for step in range(first, steps):
        for group in optimizer.param_groups:
            group["lr"] = _schedule(step, steps, lr)
        strength = 0.05 * max(0.0, 1 - step / (0.75 * steps)) ** 2
        jitter = torch.stack([torch.randn(delta.shape[1], generator=g, device=g.device) for g in streams])
        jitter = jitter.to(delta.dtype) * strength
        code = start + sigma * (delta + jitter)
        images = generator.synthesize(code.reshape(-1, *shape), space=objective.space, noise=noise)
        terms = objective.terms(images, targets, target_points, delta, noise)
        total = objective.total(terms)
        optimizer.zero_grad(set_to_none=True)
        total.sum().backward()
        optimizer.step()
        if noise is not None:
            with torch.no_grad():
                for n in noise:
                    n.sub_(n.mean(dim=(2, 3), keepdim=True)).div_(n.std(dim=(2, 3), keepdim=True).clamp_min(1e-8))
        with torch.no_grad():
            value = total.detach()
            if best is None:
                best = {"loss": value.clone(), "delta": delta.detach().clone(),
                        "terms": {k: v.detach().clone() for k, v in terms.items()}}
            better = value < best["loss"]
            best["loss"] = torch.where(better, value, best["loss"])
            best["delta"][better] = (delta.detach() + jitter)[better]
            for k, v in terms.items():
                best["terms"][k] = torch.where(better, v.detach(), best["terms"][k])
        bar.update(1)
        if state.due(step, steps):
            state.keep_running(batch, {"delta": delta.detach(), "noise": None if noise is None else [n.detach() for n in noise],
                                       "optimizer": optimizer.state_dict(), "step": step + 1, "best": best,
                                       "streams": [g.get_state() for g in streams]})
    codes = (start + sigma * best["delta"]).detach()
    return {"codes": codes.cpu(), "terms": {k: v.cpu() for k, v in best["terms"].items()},
            "noise": None if noise is None else [n.detach().cpu() for n in noise]}


class _Checkpoint:
    """Finished batches and the running batch's state, in one file (when a path is given)."""

    every = 25

    def __init__(self, path: str | os.PathLike | None, fingerprint: str) -> None:
        self.path, self.fingerprint = (Path(path) if path is not None else None), fingerprint
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "done": {}, "running": None}
        if self.path is not None and self.path.exists():
            saved = torch.load(self.path, map_location="cpu", weights_only=True)  # no code runs
            if saved.get("fingerprint") != fingerprint:
                raise InputError(f"{self.path} holds an inversion of other images or settings; pass another "
                                 f"checkpoint file, or remove it")
            self.data = saved

    def finished(self, batch: int) -> bool:
        return batch in self.data["done"]

    def result(self, batch: int) -> dict[str, Any]:
        return self.data["done"][batch]

    def running(self, batch: int) -> dict[str, Any] | None:
        running = self.data["running"]
        return running["state"] if running is not None and running["batch"] == batch else None

    def due(self, step: int, steps: int) -> bool:
        return self.path is not None and (step + 1) % self.every == 0 and step + 1 < steps

    def keep_running(self, batch: int, state: dict[str, Any]) -> None:
        self.data["running"] = {"batch": batch, "state": state}
        self._write()

    def store(self, batch: int, result: dict[str, Any]) -> None:
        self.data["done"][batch] = result
        self.data["running"] = None
        self._write()

    def _write(self) -> None:
        if self.path is not None:
            write_torch_file(self.path, self.data)

    def remove(self) -> None:
        if self.path is not None and self.path.exists():
            self.path.unlink()


def _assemble(generator: Generator, state: _Checkpoint, batches: int, space: str, optimize_space: str,
              images: torch.Tensor, names: list[str], settings: dict[str, Any]) -> InversionResult:
    parts = [state.result(b) for b in range(batches)]
    flat = torch.cat([p["codes"] for p in parts])
    codes = flat.reshape(-1, *generator.latent_shape(optimize_space)).to(generator.device, generator.dtype)
    codes = generator.convert(codes, optimize_space, space) if optimize_space != space else codes
    with torch.no_grad():
        reconstructions = in_fixed_batches(lambda c: generator.synthesize(c, space=space).float().cpu(), codes,
                                           RECONSTRUCTION_BATCH)
    losses = {k: torch.cat([p["terms"][k] for p in parts]) for k in parts[0]["terms"]}
    noise = None
    if parts[0]["noise"] is not None:
        noise = [torch.cat([p["noise"][i] for p in parts]) for i in range(len(parts[0]["noise"]))]
    targets = images.detach().float().cpu()
    result = InversionResult(codes.detach().cpu(), space, targets, reconstructions, psnr(reconstructions, targets),
                             losses, names, settings, {"software": software_provenance(),
                                                       "generator": dict(getattr(generator, "provenance", {}) or {})},
                             noise)
    state.remove()
    return result
