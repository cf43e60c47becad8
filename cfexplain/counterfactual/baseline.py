"""The unconstrained baseline: a counterfactual along the classifier's gradient in the whole latent space.

An explanation restricted to a semantic subspace should be weighed against what the entangled
latent space does without the restriction. In the manner of Latent Shift (Cohen et al., 2021,
"Gifsplanation"), each face gets one direction of its own: the gradient of the decision gap
with respect to its whole latent code, ``d_i = ∇_u gap(u_i) / ‖∇_u gap(u_i)‖``, and the search
runs along it, in the same edit unit and budget as the subspaces. Its row says how small an edit
flips the decision when nothing constrains it, and with what side effects; a semantic that flips
as often at a similar edit while keeping its keep criteria is the better explanation.

The direction's unit: for ``"image"``, ``d_i`` is scaled by the RMS image change it causes at face
``i`` (first order, one JVP per face), for ``"latent"`` by the spread of sampled codes along it.
"""

from __future__ import annotations

import torch
from torch.func import jvp

from ..generators.base import Generator
from .search import SearchProblem
from .units import metric_view

__all__ = ["BASELINE_NAME", "with_latent_gradient"]

BASELINE_NAME = "latent_gradient"
"""The baseline's name in results' ``subspace`` column."""

def _gradients(problem: SearchProblem, batch_size: int) -> torch.Tensor:
    """``(faces, D)`` unit gradients of each face's decision gap with respect to its code."""
    parts = []
    faces = torch.arange(len(problem.codes), device=problem.codes.device)
    for rows in faces.split(batch_size):
        start = problem.codes[rows].clone().requires_grad_(True)
        gap = problem.gap(problem.logits_of(problem.images_of(start)), rows)
        (grad,) = torch.autograd.grad(gap.sum(), start)
        parts.append(grad.detach())
    gradients = torch.cat(parts)
    return gradients / gradients.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _image_rms(problem: SearchProblem, directions: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``(faces,)`` RMS image change per unit step along each face's direction (first order; one
    batched JVP per ``batch_size`` faces: each face's image depends on its own code only)."""
    def images(flat: torch.Tensor) -> torch.Tensor:
        return metric_view(problem.images_of(flat))

    values = []
    for codes, tangents in zip(problem.codes.split(batch_size), directions.split(batch_size)):
        change = jvp(images, (codes,), (tangents,))[1]
        values.append(change.flatten(1).square().mean(dim=1).sqrt())
    return torch.cat(values).detach()


def with_latent_gradient(problem: SearchProblem, generator: Generator, space: str, unit: str, *,
                         batch_size: int, scale_samples: int = 2000, seed: int = 7919) -> SearchProblem:
    """``problem`` with one more item per face: the face's search along its own latent gradient
    (module docstring). Its bases follow the problem's, one per face; its items follow the
    problem's, face by face."""
    faces = len(problem.codes)
    directions = _gradients(problem, batch_size)
    if unit == "image":
        scale = 1.0 / _image_rms(problem, directions, batch_size).clamp_min(1e-12)
    else:
        scale = generator.edit_scale(space, directions.T.detach().cpu(), n_samples=scale_samples, seed=seed)
        scale = scale.to(directions).clamp_min(1e-8)
    own = (directions * scale[:, None]).to(problem.bases.dtype)
    k = problem.bases.shape[2]
    padded = torch.zeros(faces, problem.bases.shape[1], k, device=problem.bases.device, dtype=problem.bases.dtype)
    padded[:, :, 0] = own
    bases = torch.cat([problem.bases, padded])
    index = torch.arange(faces, device=problem.face_of.device)
    return SearchProblem(problem.codes, bases, torch.cat([problem.face_of, index]),
                         torch.cat([problem.subspace_of, problem.bases.shape[0] + index]), problem.target,
                         problem.original_logits, problem.threshold_logit, problem.images_of, problem.logits_of)
