"""Unsupervised discovery of interpretable directions (Voynov & Babenko, ICML 2020).

A direction matrix ``A`` (``D × K``) is learned jointly with a *reconstructor* ``R``: for a latent
``z``, a direction index ``k`` and a shift ``ε``, ``R`` sees the image pair
``(G(z), G(z + ε A e_k))`` and must tell ``k`` (cross-entropy) and ``ε`` (L1, weight 0.25). Directions
that make the pair easy to tell apart, hence distinct and visible, win. ``G`` is frozen; the
gradient flows through ``G(z + ε A e_k)`` into ``A``.

``A`` is either ``"ortho"`` (the first K columns of ``expm(S − Sᵀ)``, ``S`` free: orthonormal
directions; the paper's default) or ``"linear"`` (a free matrix with unit-norm columns).
Shifts are drawn from ``U[−6, 6]`` and pushed to ``|ε| ≥ 0.5``.

The same training loop with ``A`` fixed evaluates directions: *reconstructor classification
accuracy* (RCA), the paper's measure of how distinguishable a set of directions is.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._torch_files import read_torch_file, write_torch_file
from ..errors import InputError
from ..generators.base import Generator, make_rng

__all__ = ["Deformator", "Reconstructor", "VoynovDiscovery", "reconstructor_accuracy", "random_directions",
           "coordinate_directions"]


class Deformator(nn.Module):
    """The learnable direction matrix ``A`` (``D × K``)."""

    def __init__(self, dim: int, n_directions: int, kind: str = "ortho", *, rng: torch.Generator | None = None) -> None:
        super().__init__()
        if kind not in ("ortho", "linear"):
            raise InputError(f"deformator must be 'ortho' or 'linear', got {kind!r}")
        if not 1 <= n_directions <= dim and kind == "ortho":
            raise InputError(f"an orthonormal deformator has at most D = {dim} directions, got {n_directions}")
        self.kind, self.n_directions = kind, n_directions
        if kind == "ortho":
            self.skew = nn.Parameter(1e-3 * torch.randn(dim, dim, generator=rng))
        else:  # coordinate axes to start from, as the reference's identity initialisation
            self.matrix = nn.Parameter(torch.eye(dim, n_directions) + 1e-3 * torch.randn(dim, n_directions, generator=rng))

    def directions(self) -> torch.Tensor:
        """``(D, K)``: orthonormal (ortho) or unit-norm (linear) columns."""
        if self.kind == "ortho":
            return torch.linalg.matrix_exp(self.skew - self.skew.T)[:, : self.n_directions]
        return self.matrix / self.matrix.norm(dim=0, keepdim=True)

    def forward(self, index: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Latent shifts ``(B, D)``: ``ε_b · A[:, k_b]``."""
        return self.directions()[:, index].T * shift[:, None]


class _FixedDirections(nn.Module):
    def __init__(self, directions: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", directions / directions.norm(dim=0, keepdim=True))

    def directions(self) -> torch.Tensor:
        return self.matrix

    def forward(self, index: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return self.matrix[:, index].T * shift[:, None]


class _ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class Reconstructor(nn.Module):
    """A small ResNet on the channel-concatenated image pair with two heads: direction logits
    (K) and the shift (1). Images larger than ``size`` are resized to it first."""

    def __init__(self, n_directions: int, *, channels: int = 3, width: int = 32, size: int = 64) -> None:
        super().__init__()
        self.size = size
        self.stem = nn.Sequential(nn.Conv2d(2 * channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        self.blocks = nn.Sequential(*[_ResidualBlock(a, b, 2) for a, b in zip(widths[:-1], widths[1:])])
        self.direction = nn.Linear(widths[-1], n_directions)
        self.shift = nn.Linear(widths[-1], 1)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([before, after], dim=1)
        if x.shape[-1] > self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        features = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.direction(features), self.shift(features)[:, 0]


@dataclass
class _Settings:
    n_directions: int
    space: str
    steps: int
    batch_size: int
    shift_scale: float
    min_shift: float
    shift_weight: float
    deformator_lr: float
    reconstructor_lr: float
    reconstructor_width: int
    reconstructor_size: int
    truncation: float
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)


def _check_space(generator: Generator, space: str) -> None:
    if space not in ("z", "w") or space not in generator.spaces:
        raise InputError(f"direction discovery works in 'z' or 'w' (the generator has {list(generator.spaces)}), got {space!r}")


def _sample_batch(generator: Generator, settings: _Settings, rng: torch.Generator, n_directions: int):
    codes = generator.sample(settings.batch_size, space=settings.space, seed=rng,
                             truncation=settings.truncation if settings.space != "z" else 1.0)
    index = torch.randint(0, n_directions, (settings.batch_size,), generator=rng)
    shift = (torch.rand(settings.batch_size, generator=rng) * 2 - 1) * settings.shift_scale
    small = shift.abs() < settings.min_shift
    shift = torch.where(small, torch.where(shift < 0, -settings.min_shift, settings.min_shift), shift)
    device = generator.device
    return codes, index.to(device), shift.to(device=device, dtype=codes.dtype)


def _step(generator, deformator, reconstructor, settings, rng, optimizers) -> torch.Tensor:
    """One training step; ``(2,)`` on the generator's device: the loss and the accuracy at telling
    the directions apart (left there, so that a step never waits for the device)."""
    codes, index, shift = _sample_batch(generator, settings, rng, deformator.directions().shape[1])
    with torch.no_grad():
        before = generator.synthesize(codes, space=settings.space)
    after = generator.synthesize(codes + deformator(index, shift).to(codes.dtype), space=settings.space)
    logits, predicted_shift = reconstructor(before, after)
    loss = F.cross_entropy(logits, index) + settings.shift_weight * (predicted_shift - shift).abs().mean()
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()
    return torch.stack([loss.detach(), (logits.argmax(dim=1) == index).float().mean().to(loss.dtype)])


def _train(generator, deformator, reconstructor, settings: _Settings, *, train_directions: bool,
           checkpoint_dir: str | os.PathLike | None, checkpoint_every: int, progress: bool, desc: str) -> dict:
    """The shared training loop; resumable from ``checkpoint_dir``."""
    from tqdm.auto import tqdm

    rng = make_rng(settings.seed)
    optimizers = [torch.optim.Adam(reconstructor.parameters(), lr=settings.reconstructor_lr)]
    if train_directions:
        optimizers.append(torch.optim.Adam(deformator.parameters(), lr=settings.deformator_lr))
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    step, path, started = 0, None, time.perf_counter()
    if checkpoint_dir is not None:
        key = hashlib.sha256(json.dumps({**vars(settings), "train_directions": train_directions,
                                         "generator": generator.provenance or repr(generator)}, sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        path = Path(checkpoint_dir) / f"voynov-{key}.pt"
        if path.is_file():
            state = read_torch_file(path, f"{path} (a direction-training checkpoint)")
            deformator.load_state_dict(state["deformator"])
            reconstructor.load_state_dict(state["reconstructor"])
            for optimizer, saved in zip(optimizers, state["optimizers"]):
                optimizer.load_state_dict(saved)
            rng.set_state(state["rng"])
            step, history = int(state["step"]), {k: v.tolist() for k, v in state["history"].items()}
    generator.requires_grad_(False)
    reconstructor.train()
    with tqdm(total=settings.steps, initial=step, desc=desc, unit="step", disable=not progress) as bar:
        pending: list[torch.Tensor] = []  # the steps' (loss, accuracy) not yet read back from the device
        while step < settings.steps:
            pending.append(_step(generator, deformator, reconstructor, settings, rng, optimizers))
            step += 1
            bar.update(1)
            saving = path is not None and (step % checkpoint_every == 0 or step == settings.steps)
            if step % 50 == 0 or saving or step == settings.steps:
                for loss, accuracy in torch.stack(pending).tolist():
                    history["loss"].append(loss)
                    history["accuracy"].append(accuracy)
                pending.clear()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(history['loss'][-50:]):.3f}", accuracy=f"{np.mean(history['accuracy'][-50:]):.2f}")
            if saving:
                state = {"deformator": deformator.state_dict(), "reconstructor": reconstructor.state_dict(),
                         "optimizers": [o.state_dict() for o in optimizers], "rng": rng.get_state(), "step": step,
                         "history": {k: torch.tensor(v) for k, v in history.items()}}
                write_torch_file(path, state)
    reconstructor.eval()
    return {"history": history, "seconds": time.perf_counter() - started}


def _evaluate(generator, deformator, reconstructor, settings: _Settings, batches: int, seed: int) -> tuple[float, np.ndarray]:
    """Accuracy of the reconstructor at telling directions apart on fresh batches: overall, and
    per direction."""
    n_directions = deformator.directions().shape[1]
    rng = make_rng(seed)
    correct, seen = np.zeros(n_directions), np.zeros(n_directions)
    reconstructor.eval()
    with torch.no_grad():
        for _ in range(batches):
            codes, index, shift = _sample_batch(generator, settings, rng, n_directions)
            after = generator.synthesize(codes + deformator(index, shift).to(codes.dtype), space=settings.space)
            logits, _ = reconstructor(generator.synthesize(codes, space=settings.space), after)
            hits = (logits.argmax(dim=1) == index).cpu().numpy()
            np.add.at(correct, index.cpu().numpy(), hits)
            np.add.at(seen, index.cpu().numpy(), 1)
    return float(correct.sum() / max(seen.sum(), 1)), correct / np.maximum(seen, 1)


def _settings(n_directions: int, space: str, kwargs: dict) -> _Settings:
    defaults = dict(steps=2000, batch_size=32, shift_scale=6.0, min_shift=0.5, shift_weight=0.25, deformator_lr=1e-4,
                    reconstructor_lr=1e-4, reconstructor_width=32, reconstructor_size=64, truncation=1.0, seed=0)
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise InputError(f"unknown options {sorted(unknown)}; options: {sorted(defaults)}")
    settings = _Settings(n_directions=n_directions, space=space, **{**defaults, **kwargs})
    if settings.steps < 1 or settings.batch_size < 2:
        raise InputError("steps must be ≥ 1 and batch_size ≥ 2")
    if not 0 <= settings.min_shift < settings.shift_scale:
        raise InputError("need 0 ≤ min_shift < shift_scale")
    return settings


class VoynovDiscovery:
    """Learn K interpretable directions by the Voynov–Babenko objective.

    Construction stores settings; :meth:`fit` trains; the learned attributes end in ``_``.

    Args:
        n_directions: K.
        space: ``"z"`` or ``"w"`` (StyleGAN2: the W vector is shifted, broadcast to all layers).
        deformator: ``"ortho"`` or ``"linear"``.
        steps, batch_size: training length (the reference uses 10⁵ steps of 32).
        shift_scale, min_shift: shifts ``ε ~ U[−shift_scale, shift_scale]``, ``|ε| ≥ min_shift``.
        shift_weight: weight of the shift-regression (L1) term.
        deformator_lr, reconstructor_lr: Adam learning rates (reference: 1e-4 both).
        reconstructor_width, reconstructor_size: the reconstructor's base width and input size.
        truncation: ψ when sampling ``w``.
        seed: seed of initialisation and sampling.
        checkpoint_dir, checkpoint_every: save training state there every so many steps and resume.
        progress: show a progress bar.
        eval_batches: batches of the final accuracy measurement.

    Attributes:
        directions_: ``(D, K)`` learned directions (unit-norm columns).
        reconstructor_: the trained reconstructor.
        accuracy_, direction_accuracy_: the reconstructor's accuracy on fresh batches, overall and
            per direction ``(K,)``.
        history_: per-step ``loss`` and reconstructor ``accuracy`` lists.
        seconds_: training time.
    """

    def __init__(self, n_directions: int = 32, *, space: str = "z", deformator: str = "ortho",
                 checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 500, progress: bool = True,
                 eval_batches: int = 20, **options: Any) -> None:
        self.n_directions, self.space, self.deformator = n_directions, space, deformator
        self.eval_batches = eval_batches
        self.checkpoint_dir, self.checkpoint_every, self.progress = checkpoint_dir, checkpoint_every, progress
        self.options = options

    def fit(self, generator: Generator) -> "VoynovDiscovery":
        """Train the directions and the reconstructor on ``generator``; returns ``self``."""
        _check_space(generator, self.space)
        settings = _settings(self.n_directions, self.space, {**self.options})
        settings.extra = {"deformator": self.deformator}
        rng = make_rng(settings.seed)
        dim = generator.latent_dim(self.space)
        deformator = Deformator(dim, self.n_directions, self.deformator, rng=rng).to(generator.device)
        torch.manual_seed(settings.seed)  # the reconstructor's default initialisation
        reconstructor = Reconstructor(self.n_directions, width=settings.reconstructor_width,
                                      size=settings.reconstructor_size).to(generator.device)
        result = _train(generator, deformator, reconstructor, settings, train_directions=True,
                        checkpoint_dir=self.checkpoint_dir, checkpoint_every=self.checkpoint_every,
                        progress=self.progress, desc="Voynov–Babenko directions")
        self.accuracy_, self.direction_accuracy_ = _evaluate(generator, deformator, reconstructor, settings,
                                                             self.eval_batches, settings.seed + 1)
        self.directions_ = deformator.directions().detach().cpu()
        self.reconstructor_ = reconstructor
        self.history_ = result["history"]
        self.seconds_ = result["seconds"]
        self.settings_ = settings
        return self


def reconstructor_accuracy(generator: Generator, directions: torch.Tensor, *, space: str = "z", steps: int = 1000,
                           eval_batches: int = 20, progress: bool = True, **options: Any) -> dict[str, float]:
    """Reconstructor classification accuracy (RCA) of fixed directions ``(D, K)``.

    A fresh reconstructor is trained for ``steps`` steps to tell the directions apart (the
    directions are not trained), then its accuracy at predicting ``k`` is measured on
    ``eval_batches`` new batches. Higher means more distinguishable directions. Options as for
    :class:`VoynovDiscovery` (``batch_size``, ``reconstructor_lr``, ``seed`` …).

    Returns:
        ``{"accuracy": …, "train_accuracy": … (last 100 steps), "seconds": …}``.
    """
    _check_space(generator, space)
    directions = torch.as_tensor(directions, dtype=generator.dtype)
    if directions.ndim != 2 or directions.shape[0] != generator.latent_dim(space):
        raise InputError(f"directions must be (D, K) with D = {generator.latent_dim(space)}, got {tuple(directions.shape)}")
    settings = _settings(directions.shape[1], space, {**options, "steps": steps})
    fixed = _FixedDirections(directions.to(generator.device))
    torch.manual_seed(settings.seed)
    reconstructor = Reconstructor(directions.shape[1], width=settings.reconstructor_width,
                                  size=settings.reconstructor_size).to(generator.device)
    result = _train(generator, fixed, reconstructor, settings, train_directions=False, checkpoint_dir=None,
                    checkpoint_every=steps, progress=progress, desc="reconstructor accuracy")
    accuracy, _ = _evaluate(generator, fixed, reconstructor, settings, eval_batches, settings.seed + 1)
    return {"accuracy": accuracy, "train_accuracy": float(np.mean(result["history"]["accuracy"][-100:])),
            "seconds": result["seconds"]}


def random_directions(dim: int, n_directions: int, *, seed: int = 0) -> torch.Tensor:
    """``(D, K)`` random orthonormal directions (the RCA baseline)."""
    q, _ = torch.linalg.qr(torch.randn(dim, n_directions, generator=make_rng(seed)))
    return q


def coordinate_directions(dim: int, n_directions: int) -> torch.Tensor:
    """``(D, K)``: the first K coordinate axes (the other RCA baseline)."""
    return torch.eye(dim, n_directions)
