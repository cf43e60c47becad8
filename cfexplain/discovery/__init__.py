"""Unsupervised direction discovery: Voynov–Babenko, GANSpace and SeFa behind one call.

:func:`discover_directions` returns a :class:`~cfexplain.subspaces.SubspaceSet` of one-dimensional
subspaces, one per direction, so that discovered directions feed the same counterfactual search
and reports as the criteria-based subspaces. With ``describe_with`` (named criteria), each
direction gets an automatic description, e.g. ``"mostly lip colour, little else"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..criteria.base import Criterion
from .._version import software_provenance
from ..errors import InputError
from ..generators.base import Generator
from ..subspaces.core import Subspace, SubspaceSet
from .closed_form import ganspace_directions, sefa_directions
from .describe import DirectionDescription, describe_directions
from .voynov import (
    Deformator,
    Reconstructor,
    VoynovDiscovery,
    coordinate_directions,
    random_directions,
    reconstructor_accuracy,
)

__all__ = [
    "Deformator",
    "DirectionDescription",
    "METHODS",
    "Reconstructor",
    "VoynovDiscovery",
    "coordinate_directions",
    "describe_directions",
    "discover_directions",
    "ganspace_directions",
    "random_directions",
    "reconstructor_accuracy",
    "sefa_directions",
]

METHODS = ("voynov", "ganspace", "sefa")


def discover_directions(generator: Generator, method: str = "voynov", *, n_directions: int = 32,
                        space: str | None = None, seed: int = 0, describe_with: Mapping[str, Criterion] | None = None,
                        describe_samples: int = 4, **options: Any) -> SubspaceSet:
    """Find ``n_directions`` directions in ``space`` without supervision.

    Args:
        generator: any generator (SeFa needs a StyleGAN2).
        method: ``"voynov"`` (trained; options of :class:`VoynovDiscovery`: ``steps``,
            ``batch_size``, ``deformator``, learning rates, ``checkpoint_dir`` …), ``"ganspace"``
            (options ``n_samples``, ``layer``) or ``"sefa"`` (option ``layers``).
        n_directions: K.
        space: ``"z"`` or ``"w"``; default ``"w"`` for StyleGAN2 (SeFa always), else ``"z"``.
        seed: seed of sampling and training.
        describe_with: named criteria to describe each direction by (see
            :func:`describe_directions`); ``None`` for no descriptions.
        describe_samples: faces the descriptions are estimated on.

    Returns:
        A :class:`SubspaceSet` of K one-dimensional subspaces named ``"{method}_00"`` …, each with
        its score (GANSpace: standard deviation; SeFa: eigenvalue; Voynov: the final reconstructor
        accuracy on that direction) and provenance (method, settings, description).
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    space = space or generator.discovery_space
    details: dict[str, Any]
    if method == "voynov":
        discovery = VoynovDiscovery(n_directions, space=space, seed=seed, **options).fit(generator)
        directions = discovery.directions_.double().numpy()
        scores = discovery.direction_accuracy_
        details = {"settings": {k: v for k, v in vars(discovery.settings_).items() if k != "extra"},
                   "deformator": discovery.deformator, "final_loss": float(np.mean(discovery.history_["loss"][-200:])),
                   "accuracy": discovery.accuracy_, "seconds": discovery.seconds_}
    elif method == "ganspace":
        directions, scores, details = ganspace_directions(generator, n_directions, space=space, seed=seed, **options)
    else:
        if space != "w":
            raise InputError("SeFa directions live in 'w'")
        directions, scores, details = sefa_directions(generator, n_directions, **options)
    descriptions = (describe_directions(generator, torch.from_numpy(directions), describe_with, space=space,
                                        n_samples=describe_samples, seed=seed, progress=False)
                    if describe_with else [None] * directions.shape[1])
    shape = generator.latent_shape(space)
    subspaces = []
    for k in range(directions.shape[1]):
        provenance: dict[str, Any] = {"method": method, "index": k}
        if descriptions[k] is not None:
            provenance.update(description=descriptions[k].text, criterion_shares=descriptions[k].shares)
        subspaces.append(Subspace(f"{method}_{k:02d}", torch.from_numpy(directions[:, k:k + 1].copy()),
                                  torch.tensor([float(scores[k])]), space, shape, provenance))
    provenance = software_provenance(method=method, space=space, n_directions=directions.shape[1], seed=seed,
                                     generator=dict(generator.provenance), details=details)
    return SubspaceSet(subspaces, provenance=provenance)
