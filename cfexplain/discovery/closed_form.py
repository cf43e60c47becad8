"""Closed-form direction discovery: GANSpace (PCA) and SeFa (factorising the style affines)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..generators.base import Generator, make_rng
from ..generators.wrapped import ModuleGenerator

__all__ = ["ganspace_directions", "sefa_directions"]


def _pca(samples: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the top-k principal axes ``(F, k)`` and the standard deviation along each.

    Small problems take the exact SVD; wide feature layers (``min(N, F) > 4k + 64``) take a
    randomized SVD (Halko et al.: 2k + 10 oversampled probes, 4 power iterations), which costs
    O(N·F·k) instead of O(N·F·min(N, F))."""
    mean = samples.mean(axis=0)
    centred = samples - mean
    if min(centred.shape) <= 4 * k + 64:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        axes, values = vt[:k].T, s[:k]
    else:
        u, s, v = torch.svd_lowrank(torch.from_numpy(centred), q=min(2 * k + 10, min(centred.shape)), niter=4)
        axes, values = v[:, :k].numpy(), s[:k].numpy()
    std = values / np.sqrt(max(len(samples) - 1, 1))
    return mean, axes, std


def _first_leaf(module: nn.Module) -> str:
    for name, child in module.named_modules():
        if name and not list(child.children()):
            return name
    raise InputError("the wrapped generator has no sub-module to take features from")


def _features(generator: Generator, z: torch.Tensor, layer: str | None) -> torch.Tensor:
    """Features ``(N, F)`` of latents ``z`` at an intermediate layer (StyleGAN2: ``w``)."""
    if "w" in generator.spaces and layer in (None, "w", "mapping"):
        return generator.convert(z, "z", "w")
    if not isinstance(generator, ModuleGenerator):
        raise InputError("GANSpace through an intermediate layer needs a generator with a mapping network (layer 'w') "
                         "or a ModuleGenerator")
    name = layer or _first_leaf(generator.module)
    modules = dict(generator.module.named_modules())
    if name not in modules:
        raise InputError(f"no layer {name!r} in the generator; layers: {[n for n in modules if n][:20]}")
    captured: list[torch.Tensor] = []
    handle = modules[name].register_forward_hook(lambda _m, _i, out: captured.append(out.detach().flatten(1)))
    try:
        generator.synthesize(z)
    finally:
        handle.remove()
    return captured[0]


def ganspace_directions(generator: Generator, n_directions: int, *, space: str | None = None, n_samples: int = 20_000,
                        layer: str | None = None, seed: int = 0, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray, dict]:
    """GANSpace (Härkönen et al. 2020): principal components of sampled latents or features.

    * StyleGAN2 in ``"w"``: PCA of ``w = mapping(z)`` directly; directions are the principal axes
      (unit norm), scores the standard deviation of ``w`` along them.
    * ``"z"`` (any generator): PCA of an intermediate layer's features (StyleGAN2: ``w``; a
      wrapped generator: ``layer``, by default its first sub-module), then the latent directions
      by least squares, ``Z ≈ C M`` with ``C`` the standardised principal coordinates; each row of
      ``M`` (normalised) is a direction. Scores are the features' standard deviations.

    Returns:
        ``(directions (D, K), scores (K,), details)``.
    """
    space = space or generator.discovery_space
    if space not in ("z", "w") or space not in generator.spaces:
        raise InputError(f"GANSpace works in 'z' or 'w' (the generator has {list(generator.spaces)}), got {space!r}")
    if n_directions < 1:
        raise InputError("n_directions must be positive")
    rng = make_rng(seed)
    zs, features = [], []
    with torch.no_grad():
        for start in range(0, n_samples, batch_size):
            z = generator.sample(min(batch_size, n_samples - start), space="z", seed=rng)
            zs.append(z.double().cpu())
            features.append(_features(generator, z, "w" if space == "w" else layer).double().cpu())
    z_all = torch.cat(zs).numpy()
    feats = torch.cat(features).numpy()
    k = min(n_directions, feats.shape[1], n_samples - 1)
    mean, axes, std = _pca(feats, k)
    if space == "w":
        return axes, std, {"pca_on": "w", "samples": n_samples}
    coordinates = (feats - mean) @ axes / np.where(std > 0, std, 1.0)
    solution, *_ = np.linalg.lstsq(coordinates, z_all, rcond=None)  # (K, D): Z ≈ C M
    directions = solution.T / np.linalg.norm(solution, axis=1)
    return directions, std, {"pca_on": layer or "first layer", "samples": n_samples}


def sefa_directions(generator: Generator, n_directions: int, *,
                    layers: Sequence[str | int] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """SeFa (Shen & Zhou 2021): eigenvectors of ``AᵀA``, ``A`` the stacked style-affine weights
    (each output row normalised to unit length) of the chosen layers; no generator pass at all.

    Args:
        layers: style layers (names or positions of ``generator.style_layout``); default: every
            modulated convolution (ToRGB layers and StyleGAN3's geometric input stage excluded).

    Returns:
        ``(directions (w_dim, K), eigenvalues (K,), details)``; directions live in ``"w"``.
    """
    affines = generator.style_weights()
    layout = generator.style_layout
    chosen = [layout[i] for i in layers] if layers is not None else [e for e in layout if e.role == "conv"]
    weights = []
    for entry in chosen:
        w = affines[entry.name].detach().double().cpu().numpy()
        weights.append(w / np.linalg.norm(w, axis=1, keepdims=True))
    stacked = np.concatenate(weights, axis=0)
    values, vectors = np.linalg.eigh(stacked.T @ stacked)
    order = np.argsort(values)[::-1][: min(n_directions, len(values))]
    return vectors[:, order], values[order], {"layers": [e.name for e in chosen]}
