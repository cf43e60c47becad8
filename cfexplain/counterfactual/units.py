"""Edit units: how the coefficients of a counterfactual edit are measured, so that edits in
different subspaces can be compared.

* ``"latent"``: standard deviations of the latent distribution along each basis vector
  (:meth:`Generator.edit_scale`). An edit of one unit moves a code as far as faces differ along
  that direction. It is a fair unit inside one subspace, but not across subspaces: a direction of
  small image effect gets as much room as one of large effect.
* ``"image"``: root-mean-square change of the image (pixels in the generator's ``[-1, 1]`` range),
  to first order and on average over faces. The subspace's coordinates are whitened by the image
  metric ``P = E_i[(J_i V)ᵀ(J_i V)] / pixels`` (``J_i`` the generator's Jacobian at face ``i``), so
  that ``‖α‖`` is the RMS image change the edit ``V P^{-1/2} α`` causes. Semantics are then
  compared at equal image change: a semantic that moves the decision with a small, local change
  of the face beats one that needs to repaint it.

  Measuring ``P`` costs one Jacobian-vector product per direction and face. When several
  subspaces are measured together (:func:`edit_bases`: an audit's semantics, or its random
  control) and their directions outnumber the latent dimensions ``D`` (a ``w`` space, with its
  32 random subspaces per dimension), the metric of the whole space, ``M = E_i[J_iᵀ J_i] /
  pixels``, is measured once with ``D`` products and each ``P`` is its projection ``Vᵀ M V``: the
  same quantity, for fewer passes.
"""

from __future__ import annotations

import hashlib
import itertools
import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import jvp, vmap
from tqdm.auto import tqdm

from .._device import accumulation_dtype
from ..distributed import SINGLE_PROCESS, Ranks
from ..errors import InputError
from ..generators.base import Generator
from ..subspaces.core import Subspace
from .settings import DEFAULT_BUDGETS, EDIT_UNITS

__all__ = ["EDIT_UNITS", "DEFAULT_BUDGETS", "latent_spread", "image_metric", "edit_basis", "edit_bases", "metric_view"]

_METRIC_RESOLUTION = 128
"""Images are average-pooled to at most this size for the image metric (RMS changes are smooth)."""


def metric_view(images: torch.Tensor) -> torch.Tensor:
    """Images as the image metric measures them: average-pooled to at most 128² (RMS changes are smooth)."""
    return F.adaptive_avg_pool2d(images, _METRIC_RESOLUTION) if images.shape[-1] > _METRIC_RESOLUTION else images


def latent_spread(generator: Generator, subspace: Subspace, *, n_samples: int = 2000, seed: int = 7919) -> torch.Tensor:
    """σ ``(k,)``: the standard deviation of sampled codes along each basis vector of ``subspace``
    (the ``"latent"`` edit unit; see :meth:`Generator.edit_scale`)."""
    return generator.edit_scale(subspace.space, subspace.basis, n_samples=n_samples, seed=seed).clamp_min(1e-8)


def image_metric(generator: Generator, directions: torch.Tensor, space: str, *, n_samples: int = 16,
                 seed: int = 7919, chunk_size: int = 16, ranks: Ranks = SINGLE_PROCESS,
                 progress: bool = False) -> torch.Tensor:
    """``P (k, k)``: the mean over ``n_samples`` faces of ``(J d_a) · (J d_b) / pixels`` for the
    directions ``(D, k)``: ``αᵀPα`` is the mean squared image change of the edit ``directions · α``
    (first order). A pass takes up to ``chunk_size`` images (directions × faces). With ``ranks``
    of a distributed run, each process measures its share of the faces and every process gets the
    whole sum. ``progress``: a bar over this process's faces."""
    if directions.ndim != 2 or directions.shape[0] != generator.latent_dim(space):
        raise InputError(f"directions must be (D, k) with D = {generator.latent_dim(space)}, got {tuple(directions.shape)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be an int ≥ 1, got {chunk_size!r}")
    shape = generator.latent_shape(space)
    tangents = directions.T.to(device=generator.device, dtype=generator.dtype)
    precise = accumulation_dtype(tangents.device)

    def images(flat: torch.Tensor) -> torch.Tensor:
        return metric_view(generator.synthesize(flat.reshape(-1, *shape), space=space))

    k = tangents.shape[0]
    metric = torch.zeros(k, k, dtype=precise, device=tangents.device)
    mine = ranks.span(n_samples)
    if mine:
        codes = generator.sample(len(mine), space=space, seed=seed, start=mine.start).reshape(len(mine), -1)
        per_pass = min(k, chunk_size)
        faces_per_pass = max(1, chunk_size // per_pass)
        for group in tqdm(codes.split(faces_per_pass), desc="image metric", unit="pass", leave=False,
                          disable=not progress):
            changes = torch.cat([vmap(lambda t: jvp(images, (group,), (t.expand(len(group), -1),))[1])(part)
                                 .reshape(part.shape[0], len(group), -1) for part in tangents.split(per_pass)])
            changes = changes.detach().to(precise)  # (k, faces, pixels)
            metric += torch.einsum("afp,bfp->ab", changes, changes) / changes.shape[2]
    return ranks.sum(metric.double().cpu()) / n_samples


_WHOLE_SPACE_BYTES = 2**30
"""The most memory one face's image changes along every latent dimension may take for the whole
space's metric (float64); larger spaces (``w+`` of a big generator) are measured subspace by subspace."""

_SCALED_BASES: weakref.WeakKeyDictionary[Generator, dict[tuple, torch.Tensor]] = weakref.WeakKeyDictionary()
"""Scaled bases already measured, per generator (entries go with the generator): audits of several
classifiers on the same subspaces, random controls included, measure each basis once."""


def _weights_version(generator: Generator) -> int:
    """Changes whenever a parameter or buffer of the generator is modified in place."""
    return sum(tensor._version for tensor in itertools.chain(generator.parameters(), generator.buffers()))


def edit_basis(generator: Generator, subspace: Subspace, unit: str, *, scale_samples: int = 2000,
               image_samples: int = 16, seed: int = 7919, ranks: Ranks = SINGLE_PROCESS) -> torch.Tensor:
    """The subspace's basis scaled to ``unit`` (:data:`EDIT_UNITS`): ``(D, k)`` columns whose
    coefficient ``α`` is measured in that unit (the edit is ``basis_scaled · α``); ``ranks``: the
    processes of a distributed run, which share the image metric's faces.

    The result is remembered for the generator (as long as its weights are unchanged), so the
    same basis with the same settings is measured once per process."""
    return edit_bases(generator, [subspace], unit, scale_samples=scale_samples, image_samples=image_samples,
                      seed=seed, ranks=ranks)[0]


def edit_bases(generator: Generator, subspaces: Sequence[Subspace], unit: str, *, scale_samples: int = 2000,
               image_samples: int = 16, seed: int = 7919, ranks: Ranks = SINGLE_PROCESS,
               progress: bool = False) -> list[torch.Tensor]:
    """:func:`edit_basis` of several subspaces of one space, measured together: in the ``"image"``
    unit, when the subspaces not yet measured have more directions than the space has dimensions,
    the image metric of the whole space is measured once and projected onto each (the module
    docstring), unless one face's changes along every dimension would take over 1 GiB. Every
    process of a distributed run must pass the same subspaces. ``progress``: a bar over the
    subspaces measured, or over the whole-space measurement's passes."""
    if unit not in EDIT_UNITS:
        raise InputError(f"unit must be one of {EDIT_UNITS}, got {unit!r}")
    if len({subspace.space for subspace in subspaces}) > 1:
        raise InputError("edit_bases measures subspaces of one latent space at a time")
    remembered = _SCALED_BASES.setdefault(generator, {})
    keys = [_basis_key(generator, subspace, unit, scale_samples, image_samples, seed, ranks) for subspace in subspaces]
    missing = {key: subspace for key, subspace in zip(keys, subspaces) if subspace.dim and key not in remembered}
    space_metric = None
    if unit == "image" and missing:
        space = next(iter(missing.values())).space
        dim = generator.latent_dim(space)
        pixels = 3 * min(generator.resolution, _METRIC_RESOLUTION) ** 2
        if sum(subspace.dim for subspace in missing.values()) > dim and dim * pixels * 8 <= _WHOLE_SPACE_BYTES:
            identity = torch.eye(dim, dtype=generator.dtype)
            space_metric = image_metric(generator, identity, space, n_samples=image_samples, seed=seed, ranks=ranks,
                                        progress=progress)
    for key, subspace in tqdm(missing.items(), desc="edit units", unit="subspace", leave=False,
                              disable=not progress or space_metric is not None or len(missing) < 2):
        remembered[key] = _scaled_basis(generator, subspace, unit, scale_samples, image_samples, seed, ranks,
                                        space_metric)
    return [remembered[key].clone() if subspace.dim else subspace.basis.clone() for key, subspace in zip(keys, subspaces)]


def _basis_key(generator: Generator, subspace: Subspace, unit: str, scale_samples: int, image_samples: int, seed: int,
               ranks: Ranks) -> tuple:
    """What a scaled basis depends on: the settings, the generator's weights and the basis's bits."""
    basis = subspace.basis.detach()
    return (subspace.space, unit, scale_samples, image_samples, seed, ranks.world_size, str(generator.device),
            str(generator.dtype), _weights_version(generator), str(basis.dtype), tuple(basis.shape),
            hashlib.sha256(basis.cpu().contiguous().numpy().tobytes()).hexdigest())


def _scaled_basis(generator: Generator, subspace: Subspace, unit: str, scale_samples: int, image_samples: int,
                  seed: int, ranks: Ranks, space_metric: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`edit_basis`, measured (in the image unit, projected from ``space_metric``, the whole
    space's image metric, when it is given)."""
    if unit == "latent":
        return subspace.basis * latent_spread(generator, subspace, n_samples=scale_samples, seed=seed)
    if space_metric is not None:
        basis = subspace.basis.detach().double().cpu()
        metric = basis.T @ space_metric @ basis
    else:
        metric = image_metric(generator, subspace.basis, subspace.space, n_samples=image_samples, seed=seed,
                              ranks=ranks)
    values, vectors = torch.linalg.eigh(metric)
    floor = values.max().clamp_min(1e-30) * 1e-6  # a unit never changes the image by more than 1 (first order)
    inverse_root = vectors @ torch.diag(values.clamp_min(floor).rsqrt()) @ vectors.T
    return (subspace.basis.double() @ inverse_root).to(subspace.basis.dtype)
