"""The batched counterfactual search (:class:`CounterfactualExplainer`): Newton or Adam steps
inside each subspace, then a root search for the minimal edit along the found path (the method is
described in the package's docstring and in ``docs/counterfactuals.md``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pandas as pd
import torch

from ..classifiers import Classifier
from ..errors import InputError
from ..generators.base import Generator
from ..subspaces.core import Subspace, SubspaceSet
from .result import CounterfactualResult
from .units import DEFAULT_BUDGETS, EDIT_UNITS, edit_basis
from .targets import TargetSpec, _loss, _target_probability, decision_gap, resolve_target

__all__ = ["CounterfactualExplainer"]

_BOUNDARY_RTOL = 0.02
"""The minimal-edit search stops once the crossing is estimated within this fraction of ``t``."""


def _attach_partial_result(error: BaseException, build: Callable[[], CounterfactualResult]) -> None:
    """Attach the work finished before ``error`` to it as ``error.partial_result`` (the result of
    ``build()``), without ever hiding ``error``: where the result cannot be built or attached, the
    exception goes on without it."""
    try:
        error.partial_result = build()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the original error matters more than its partial result
        pass


def _quadratic_root(value0: torch.Tensor, slope0: torch.Tensor, value1: torch.Tensor) -> torch.Tensor:
    """Per item, the root in [0, 1] of the quadratic ``q`` with ``q(0) = value0 < 0``, ``q'(0) = slope0``
    and ``q(1) = value1 ≥ 0`` (there is exactly one); NaN where the inputs do not allow it."""
    curvature = value1 - value0 - slope0
    root_of_discriminant = (slope0.square() - 4 * curvature * value0).clamp_min(0).sqrt()
    denominator = slope0 + root_of_discriminant
    t = -2 * value0 / denominator  # (−b + √(b² − 4ac)) / 2a, written without cancellation
    usable = torch.isfinite(t) & (denominator > 0) & (value0 < 0) & (value1 >= 0) & (t > 0) & (t < 1)
    return torch.where(usable, t, torch.full_like(t, float("nan")))


class _Originals(NamedTuple):
    """The original images of a chunk's faces and, per item of the chunk, the row of its face."""

    images: torch.Tensor  # (faces, C, H, W)
    slot: torch.Tensor  # (items,)


class _SearchEnd(NamedTuple):
    """Where the search of a chunk of items stopped."""

    alpha: torch.Tensor  # (items, k) coefficients, in the explainer's unit
    steps: torch.Tensor  # (items,) steps taken
    logits: torch.Tensor  # (items, classes) at the end point
    start_slopes: torch.Tensor  # (items,) the gap's slope at t = 0 along t·α (NaN where not computed)
    pixels: torch.Tensor  # (items, 2) mean absolute and RMS image change at the end point (NaN without originals)
    sensitivity: torch.Tensor  # (items,) ‖∇_α gap‖ at α = 0: the decision's movement per unit edit


def _image_change(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """``(N, 2)``: mean absolute and root-mean-square difference per image."""
    difference = images - originals
    return torch.stack([difference.abs().mean(dim=(1, 2, 3)), difference.square().mean(dim=(1, 2, 3)).sqrt()], dim=1)


class CounterfactualExplainer:
    """Batched counterfactual search in the subspaces of a :class:`SubspaceSet`.

    Args:
        generator: the generator the subspaces were learned for.
        classifier: the :class:`~cfexplain.classifiers.Classifier` to explain.
        subspaces: the subspaces (their latent space is the search space).
        optimizer: ``"newton"`` (linearised-gap steps), ``"adam"`` (on ``loss``), or ``"auto"``
            (``"newton"`` for the margin loss, ``"adam"`` for cross-entropy); see :mod:`cfexplain.counterfactual`.
        loss: ``"margin"`` (hinge on the decision gap, default) or ``"ce"``; used by ``"adam"``.
        margin: how far past the decision boundary (logit units) the search aims: a Newton step
            aims at a gap of twice this, an Adam item stops once its gap reaches it (a Newton item
            stops once it has crossed); the minimal edit is bracketed to a tenth of it.
        beta: weight of ``‖α‖²`` (α in standard deviations), for ``"adam"``.
        unit: what an edit's size ``‖α‖`` measures (:mod:`cfexplain.counterfactual.units`):
            ``"image"`` (default: the RMS image change it causes, so that semantics are compared at
            equal image change) or ``"latent"`` (standard deviations of the latent distribution
            along the subspace).
        budget: the largest edit ``‖α‖``, in ``unit``; edits are projected back onto this ball, and
            an item whose path crosses the boundary only beyond it is not flipped. Default: 0.2
            for ``"image"``, 3 for ``"latent"`` (:data:`~cfexplain.counterfactual.units.DEFAULT_BUDGETS`).
        steps: the most steps per item (default 20 for ``"newton"``, 100 for ``"adam"``); a Newton
            item also stops after ``patience`` steps without its gap improving by 1 % of the margin.
        lr: Adam's learning rate.
        batch_size: items optimised together.
        boundary_steps: the most iterations of the minimal-edit root search per item (each item
            stops once the crossing is bracketed to 0.5 % of its path, or its gap is within 10 % of
            the margin and the crossing estimated within 2 % of the reported edit).
        scale_samples: latent samples used to measure the spread ``σ`` along each direction (``"latent"``).
        image_samples: faces the image metric is averaged over (``"image"``).
        seed: seed of face sampling and of the spread estimate.
        progress: show progress.

    """

    def __init__(self, generator: Generator, classifier: Classifier, subspaces: SubspaceSet, *, optimizer: str = "auto",
                 loss: str = "margin", margin: float = 0.5, beta: float = 1e-3, unit: str = "image",
                 budget: float | None = None,
                 steps: int | None = None, lr: float = 0.1, patience: int = 3, batch_size: int = 64,
                 boundary_steps: int = 12, scale_samples: int = 2000, image_samples: int = 16, seed: int = 0,
                 progress: bool = True) -> None:
        if not isinstance(subspaces, SubspaceSet) or len(subspaces) == 0:
            raise InputError("the explainer needs a non-empty SubspaceSet")
        if not isinstance(classifier, Classifier):
            raise InputError(f"classifier must be a cfexplain.Classifier, got {type(classifier).__name__}")
        generator.check_space(subspaces.space)
        if tuple(generator.latent_shape(subspaces.space)) != tuple(subspaces.latent_shape):
            raise InputError(f"the subspaces are for latent shape {subspaces.latent_shape} in space {subspaces.space!r}, "
                             f"the generator has {generator.latent_shape(subspaces.space)} there")
        if loss not in ("margin", "ce"):
            raise InputError(f"loss must be 'margin' or 'ce', got {loss!r}")
        if optimizer not in ("auto", "newton", "adam"):
            raise InputError(f"optimizer must be 'auto', 'newton' or 'adam', got {optimizer!r}")
        if unit not in EDIT_UNITS:
            raise InputError(f"unit must be one of {EDIT_UNITS}, got {unit!r}")
        budget = DEFAULT_BUDGETS[unit] if budget is None else budget
        if optimizer == "auto":
            optimizer = "newton" if loss == "margin" else "adam"
        if steps is None:
            steps = 20 if optimizer == "newton" else 100
        if not (math.isfinite(budget) and budget > 0 and math.isfinite(margin) and margin > 0):
            raise InputError(f"budget and margin must be positive finite numbers, got budget={budget}, margin={margin}")
        if steps < 1 or batch_size < 1 or boundary_steps < 1 or patience < 1:
            raise InputError("steps, batch_size, boundary_steps and patience must be at least 1")
        self.generator, self.classifier, self.subspaces = generator, classifier, subspaces
        self.optimizer, self.loss, self.margin, self.beta, self.budget = optimizer, loss, margin, beta, budget
        self.unit, self.image_samples = unit, image_samples
        self.steps, self.lr, self.patience, self.batch_size = steps, lr, patience, batch_size
        self.boundary_steps, self.scale_samples, self.seed, self.progress = boundary_steps, scale_samples, seed, progress
        self._edit_bases: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ helpers

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options of this explainer (to build another one with the same settings)."""
        return {"optimizer": self.optimizer, "loss": self.loss, "margin": self.margin, "beta": self.beta,
                "unit": self.unit, "budget": self.budget, "steps": self.steps, "lr": self.lr, "patience": self.patience,
                "batch_size": self.batch_size, "boundary_steps": self.boundary_steps,
                "scale_samples": self.scale_samples, "image_samples": self.image_samples, "seed": self.seed,
                "progress": self.progress}

    @property
    def space(self) -> str:
        """The latent space searched in: the subspaces' space."""
        return self.subspaces.space

    def _with(self, **changes: Any) -> CounterfactualExplainer:
        """A copy of this explainer with some options changed (sharing the scaled bases where they
        stay valid)."""
        changes = {key: value for key, value in changes.items() if value is not None}
        base = self.options
        unknown = sorted(set(changes) - set(base))
        if unknown:
            raise InputError(f"unknown option(s) {unknown}; the options are {sorted(base)}")
        if "optimizer" in changes or "loss" in changes:  # let the constructor choose again
            del base["steps"]
            base["optimizer"] = "auto"
        if "unit" in changes and "budget" not in changes:  # the budget is in the unit
            del base["budget"]
        other = CounterfactualExplainer(self.generator, self.classifier, self.subspaces, **{**base, **changes})
        if (other.unit, other.scale_samples, other.image_samples, other.seed) == (
                self.unit, self.scale_samples, self.image_samples, self.seed):
            other._edit_bases = self._edit_bases
        return other

    def edit_basis(self, name: str) -> torch.Tensor:
        """``(D, k)``: subspace ``name``'s basis scaled so that a coefficient vector's norm is the
        edit's size in :attr:`unit` (see :func:`~cfexplain.counterfactual.units.edit_basis`)."""
        if name not in self._edit_bases:
            self._edit_bases[name] = edit_basis(self.generator, self.subspaces[name], self.unit,
                                                scale_samples=self.scale_samples, image_samples=self.image_samples,
                                                seed=self.seed + 7919)
        return self._edit_bases[name]

    def faces(self, codes_or_seeds: torch.Tensor | int | Sequence[int]) -> torch.Tensor:
        """Codes ``(N, *latent_shape)`` from codes, a number of faces (drawn with the explainer's
        seed) or a list of seeds (one face each)."""
        if isinstance(codes_or_seeds, torch.Tensor):
            return self.generator.check_codes(codes_or_seeds, self.space)
        if isinstance(codes_or_seeds, int) and not isinstance(codes_or_seeds, bool):
            if codes_or_seeds < 1:
                raise InputError("the number of faces must be positive")
            return self.generator.sample(codes_or_seeds, space=self.space, seed=self.seed)
        seeds = list(codes_or_seeds)
        if not seeds or not all(isinstance(s, int) for s in seeds):
            raise InputError("codes_or_seeds must be codes, a number of faces or a list of int seeds")
        return torch.cat([self.generator.sample(1, space=self.space, seed=s) for s in seeds])

    def _images(self, flat: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesize(flat.reshape(-1, *self.subspaces.latent_shape), space=self.space)

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        return self.classifier.logits(self._images(flat))

    def _probe(self, flat: torch.Tensor, originals: _Originals | None, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at the codes ``flat`` of the chunk's items ``rows`` and their image change from the
        original faces (NaN without ``originals``); no gradient."""
        with torch.no_grad():
            images = self._images(flat)
            logits = self.classifier.logits(images)
            if originals is None:
                return logits, torch.full((len(flat), 2), float("nan"), device=flat.device, dtype=images.dtype)
            return logits, _image_change(images, originals.images[originals.slot[rows]])

    def _threshold_logit(self) -> float:
        t = self.classifier.output.threshold
        return math.log(t / (1 - t))

    # ------------------------------------------------------------------ the search

    def explain(self, codes_or_seeds: torch.Tensor | int | Sequence[int], *, target: Any = "flip",
                subspaces: Sequence[str] | None = None, budget: float | None = None,
                **options: Any) -> CounterfactualResult:
        """Counterfactuals of every face in every subspace.

        Args:
            codes_or_seeds: codes in the subspaces' space, a number of faces, or a list of seeds.
            target: see :func:`resolve_target` (default: flip each face's decision).
            subspaces: names to search in (default: all).
            budget, options: settings of the constructor (``budget``, ``steps``, ``margin``,
                ``loss``, ``optimizer``, ``batch_size`` …) for this call only.

        Returns:
            A :class:`CounterfactualResult`.

        Items are searched in batches of ``batch_size``. If the search stops with an exception (a
        model error, out of memory, an interrupt), the items of the batches already finished are
        not lost: the exception carries them as ``error.partial_result``, a
        :class:`CounterfactualResult` (absent when no batch had finished).
        """
        if budget is not None or options:
            return self._with(budget=budget, **options).explain(codes_or_seeds, target=target, subspaces=subspaces)
        names = list(subspaces) if subspaces is not None else list(self.subspaces)
        for name in names:
            self.subspaces[name]  # raises for unknown names
        codes = self.faces(codes_or_seeds)
        n = codes.shape[0]
        flat = codes.reshape(n, -1).detach()
        with torch.no_grad():
            original_logits = torch.cat([self._logits(part) for part in flat.split(self.batch_size)])
        spec = resolve_target(self.classifier, target, original_logits)
        tau = self._threshold_logit()
        device, dtype = flat.device, flat.dtype
        k_max = max(self.subspaces[name].dim for name in names)
        if k_max == 0:
            raise InputError("all requested subspaces are empty (0 directions)")
        bases = torch.zeros(len(names), flat.shape[1], k_max, device=device, dtype=dtype)
        for s, name in enumerate(names):
            subspace = self.subspaces[name]
            bases[s, :, : subspace.dim] = self.edit_basis(name).to(device=device, dtype=dtype)
        face_of = torch.arange(n, device=device).repeat_interleave(len(names))
        space_of = torch.arange(len(names), device=device).repeat(n)
        items = n * len(names)
        alpha = torch.zeros(items, k_max, device=device, dtype=dtype)
        steps_used = torch.zeros(items, dtype=torch.long)
        end_logits = torch.zeros(items, original_logits.shape[1], device=device, dtype=original_logits.dtype)
        minimal_logits = torch.zeros_like(end_logits)
        minimal_t = torch.zeros(items, device=device, dtype=dtype)
        pixels = torch.zeros(items, 2, device=device, dtype=dtype)
        sensitivity = torch.zeros(items, device=device, dtype=dtype)
        from tqdm.auto import tqdm

        finished = 0
        try:
            with tqdm(total=items, desc="counterfactuals", unit="item", disable=not self.progress) as bar:
                for start in range(0, items, self.batch_size):
                    chunk = torch.arange(start, min(start + self.batch_size, items), device=device)
                    faces, spaces = face_of[chunk], space_of[chunk]
                    unique, slot = faces.unique(return_inverse=True)
                    with torch.no_grad():
                        originals = _Originals(self._images(flat[unique]), slot)
                    found = self._search(flat, bases, faces, spaces, spec, tau, original_logits, originals=originals)
                    boundary = self._boundary(flat, bases, faces, spaces, found, spec, tau, original_logits, originals)
                    alpha[chunk], steps_used[chunk.cpu()], end_logits[chunk] = found.alpha, found.steps, found.logits
                    minimal_t[chunk], minimal_logits[chunk], pixels[chunk] = boundary
                    sensitivity[chunk] = found.sensitivity
                    finished = start + len(chunk)
                    bar.update(len(chunk))
        except (Exception, KeyboardInterrupt) as error:  # keep the finished batches on the exception
            if finished:
                done = slice(0, finished)
                _attach_partial_result(error, lambda: self._result(
                    flat, names, bases, face_of[done], space_of[done], alpha[done], minimal_t[done],
                    steps_used[done], original_logits, end_logits[done], minimal_logits[done], pixels[done],
                    sensitivity[done], spec))
            raise
        return self._result(flat, names, bases, face_of, space_of, alpha, minimal_t, steps_used, original_logits,
                            end_logits, minimal_logits, pixels, sensitivity, spec)

    def _edit(self, bases, space_of, alpha) -> torch.Tensor:
        return torch.bmm(bases[space_of], alpha[:, :, None])[:, :, 0]

    def _gap(self, logits, spec: TargetSpec, faces, tau: float) -> torch.Tensor:
        return decision_gap(logits, spec.mode[faces], spec.index[faces], tau)

    def _search(self, flat, bases, faces, spaces, spec: TargetSpec, tau: float, original_logits, *,
                originals: _Originals | None = None, groups: torch.Tensor | None = None, group_weight: float = 0.0,
                optimizer: str | None = None, steps: int | None = None) -> _SearchEnd:
        """Search a chunk of items (``faces``, ``spaces``: each item's face and subspace)."""
        if (optimizer or self.optimizer) == "newton":
            return self._newton(flat, bases, faces, spaces, spec, tau, original_logits, originals)
        alpha, steps = self._adam(flat, bases, faces, spaces, spec, tau, groups=groups, group_weight=group_weight,
                                  steps=steps or self.steps)
        rows = torch.arange(len(faces), device=flat.device)
        end_logits, pixels = self._probe(flat[faces] + self._edit(bases, spaces, alpha), originals, rows)
        start_grad = self._start_gradient(flat, bases, faces, spaces, spec, tau)
        return _SearchEnd(alpha, steps, end_logits, (start_grad * alpha).sum(dim=1), pixels, start_grad.norm(dim=1))

    def _start_gradient(self, flat, bases, faces, spaces, spec: TargetSpec, tau: float) -> torch.Tensor:
        """``∇_α gap`` at ``α = 0`` per item, ``(items, k)``: one backward pass per distinct face,
        shared by all its subspaces (``∇_α gap = Bᵀ ∇_u gap`` for the scaled basis ``B``)."""
        unique, inverse = faces.unique(return_inverse=True)
        start = flat[unique].clone().requires_grad_(True)
        (grad_u,) = torch.autograd.grad(self._gap(self._logits(start), spec, unique, tau).sum(), start)
        return torch.bmm(bases[spaces].transpose(1, 2), grad_u[inverse][:, :, None])[:, :, 0]

    def _newton(self, flat, bases, faces, spaces, spec: TargetSpec, tau: float, original_logits,
                originals: _Originals | None) -> _SearchEnd:
        """Linearised-gap (DeepFool) steps inside each item's subspace, projected onto the budget ball."""
        alpha = torch.zeros(len(faces), bases.shape[2], device=flat.device, dtype=flat.dtype)
        steps = torch.zeros(len(faces), dtype=torch.long)
        logits = original_logits[faces].clone()
        pixels = torch.zeros(len(faces), 2, device=flat.device, dtype=flat.dtype)
        gap = self._gap(logits, spec, faces, tau)
        grad = self._start_gradient(flat, bases, faces, spaces, spec, tau)
        start_grad = grad.clone()
        best, stalled = gap.clone(), torch.zeros(len(faces), dtype=torch.long, device=flat.device)
        active = gap < 0
        for step in range(1, self.steps + 1):
            idx = active.nonzero()[:, 0]
            if len(idx) == 0:
                break
            g = grad[idx]
            delta = g * ((2 * self.margin - gap[idx]) / g.square().sum(dim=1).clamp_min(1e-20))[:, None]
            length = delta.norm(dim=1, keepdim=True)
            delta = torch.where(length > self.budget, delta * (self.budget / length), delta)
            new = alpha[idx] + delta
            norm = new.norm(dim=1, keepdim=True)
            alpha[idx] = torch.where(norm > self.budget, new * (self.budget / norm), new)
            steps[idx.cpu()] = step
            logits[idx], pixels[idx] = self._probe(flat[faces[idx]] + self._edit(bases, spaces[idx], alpha[idx]),
                                                   originals, idx)
            gap[idx] = self._gap(logits[idx], spec, faces[idx], tau)
            improved = gap[idx] > best[idx] + 0.01 * self.margin
            stalled[idx] = torch.where(improved, torch.zeros_like(stalled[idx]), stalled[idx] + 1)
            best[idx] = torch.maximum(best[idx], gap[idx])
            stop = (gap[idx] >= 0) | (stalled[idx] >= self.patience)
            active[idx[stop]] = False
            going = idx[~stop]
            if len(going) and step < self.steps:
                a = alpha[going].clone().requires_grad_(True)
                codes = flat[faces[going]] + self._edit(bases, spaces[going], a)
                (grad[going],) = torch.autograd.grad(self._gap(self._logits(codes), spec, faces[going], tau).sum(), a)
                # Give up on items that stalled at the budget and whose linearised gap cannot reach
                # the boundary anywhere on the budget ball: max_{‖α'‖ ≤ B} gap + ∇gapᵀ(α' − α) < 0.
                g, a = grad[going], alpha[going]
                on_sphere = a.norm(dim=1) >= self.budget * (1 - 1e-4)
                reachable = gap[going] + self.budget * g.norm(dim=1) - (g * a).sum(dim=1)
                active[going[on_sphere & (reachable < 0) & (stalled[going] > 0)]] = False
        return _SearchEnd(alpha, steps, logits, (start_grad * alpha).sum(dim=1), pixels, start_grad.norm(dim=1))

    def _adam(self, flat, bases, faces, spaces, spec: TargetSpec, tau: float, *, steps: int,
              groups: torch.Tensor | None = None, group_weight: float = 0.0):
        """Adam on the coefficients of a chunk of items, each stopping once it reaches the margin.

        With ``groups`` (the group of each coefficient), ``group_weight · Σ_g ‖α_g‖`` is added to
        the loss (a group lasso: it keeps a joint edit to few groups)."""
        alpha = torch.zeros(len(faces), bases.shape[2], device=flat.device, dtype=flat.dtype)
        m, v = torch.zeros_like(alpha), torch.zeros_like(alpha)
        active = torch.ones(len(faces), dtype=torch.bool, device=flat.device)
        max_steps, steps = steps, torch.zeros(len(faces), dtype=torch.long)
        b1, b2, eps = 0.9, 0.999, 1e-8
        for step in range(1, max_steps + 1):
            idx = active.nonzero()[:, 0]
            if len(idx) == 0:
                break
            a = alpha[idx].clone().requires_grad_(True)
            codes = flat[faces[idx]] + self._edit(bases, spaces[idx], a)
            logits = self._logits(codes)
            mode, index = spec.mode[faces[idx]], spec.index[faces[idx]]
            gap = decision_gap(logits, mode, index, tau)
            done = gap.detach() >= self.margin
            loss = _loss(logits, gap, mode, index, self.loss, self.margin, tau) + self.beta * a.square().sum(dim=1)
            if groups is not None and group_weight > 0:
                group_squares = torch.zeros(len(idx), int(groups.max()) + 1, dtype=a.dtype, device=a.device)
                group_squares = group_squares.index_add(1, groups, a.square())
                loss = loss + group_weight * (group_squares + 1e-12).sqrt().sum(dim=1)
            (grad,) = torch.autograd.grad(loss.sum(), a)
            grad = torch.where(done[:, None], torch.zeros_like(grad), grad)
            m[idx] = b1 * m[idx] + (1 - b1) * grad
            v[idx] = b2 * v[idx] + (1 - b2) * grad.square()
            update = self.lr * (m[idx] / (1 - b1**step)) / ((v[idx] / (1 - b2**step)).sqrt() + eps)
            new = torch.where(done[:, None], a.detach(), a.detach() - update)
            norm = new.norm(dim=1, keepdim=True)
            alpha[idx] = torch.where(norm > self.budget, new * (self.budget / norm), new)
            steps[idx.cpu()] = step
            finished = idx[done]
            active[finished] = False
        return alpha, steps

    def _boundary(self, flat, bases, face_of, space_of, found: _SearchEnd, spec: TargetSpec, tau: float,
                  original_logits, originals: _Originals | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Smallest ``t`` in [0, 1] where ``u0 + t·edit`` crosses the boundary, per item (NaN where
        the path end does not cross it; 0 where the face already meets the target), and the logits
        and image change there (the original logits and no change where not crossed).

        Regula falsi, Illinois variant: the bracket ``[lo, hi]`` always has ``gap(lo) < 0 ≤ gap(hi)``
        and the reported ``t`` is ``hi``, so the minimal counterfactual does reach the target. An
        item is done once the bracket is narrower than 0.5 % of the path, or once ``gap(hi)`` is
        within ``0.1·margin`` of the boundary and the secant's estimate of the crossing lies within
        2 % of ``hi`` (where the gap is flat near the boundary, a small gap alone would leave ``hi``
        far beyond the crossing). Where the gap's slope at ``t = 0`` is known, the first guess is
        where the quadratic through ``gap(0)``, that slope and ``gap(1)`` reaches ``0.05·margin``,
        instead of the secant's root."""
        alpha = found.alpha
        lo_g = self._gap(original_logits[face_of], spec, face_of, tau)
        hi_g = self._gap(found.logits, spec, face_of, tau)
        lo_s, hi_s = lo_g.clone(), hi_g.clone()  # the ends' gaps as the secant sees them (Illinois-scaled)
        already, crossed = lo_g >= 0, hi_g >= 0
        lo_t, hi_t = torch.zeros_like(lo_g), torch.ones_like(hi_g)
        hi_logits = torch.where(crossed[:, None], found.logits, original_logits[face_of])
        hi_pixels = torch.where(crossed[:, None], found.pixels, torch.zeros_like(found.pixels))
        hi_logits[already] = original_logits[face_of[already]]
        hi_pixels[already] = 0.0
        hi_t[already] = 0.0
        last = torch.zeros_like(lo_g)  # +1: hi moved last, −1: lo moved last
        pending = crossed & ~already
        first_guess = _quadratic_root(lo_g - 0.05 * self.margin, found.start_slopes, hi_g - 0.05 * self.margin)
        with torch.no_grad():
            for iteration in range(self.boundary_steps):
                secant = lo_t + (hi_t - lo_t) * lo_g / (lo_g - hi_g)  # with the ends' true gaps
                close = (hi_g <= 0.1 * self.margin) & (hi_t - secant <= _BOUNDARY_RTOL * hi_t)
                pending &= ((hi_t - lo_t) > 5e-3) & ~close
                idx = pending.nonzero()[:, 0]
                if len(idx) == 0:
                    break
                width = hi_t[idx] - lo_t[idx]
                t = (lo_t[idx] * hi_s[idx] - hi_t[idx] * lo_s[idx]) / (hi_s[idx] - lo_s[idx])
                if iteration == 0:
                    t = torch.where(torch.isfinite(first_guess[idx]), first_guess[idx], t)
                t = torch.minimum(torch.maximum(t, lo_t[idx] + 1e-4 * width), hi_t[idx] - 1e-4 * width)
                probes = [self._probe(flat[face_of[part]] + self._edit(bases, space_of[part], alpha[part] * tt[:, None]),
                                      originals, part)
                          for part, tt in zip(idx.split(self.batch_size), t.split(self.batch_size))]
                logits, pixels = torch.cat([p[0] for p in probes]), torch.cat([p[1] for p in probes])
                g = self._gap(logits, spec, face_of[idx], tau)
                up = g >= 0
                i_up, i_down = idx[up], idx[~up]
                hi_t[i_up], hi_g[i_up], hi_s[i_up] = t[up], g[up], g[up]
                hi_logits[i_up], hi_pixels[i_up] = logits[up], pixels[up]
                lo_s[i_up] = torch.where(last[i_up] > 0, lo_s[i_up] / 2, lo_s[i_up])  # Illinois: halve the stale end
                lo_t[i_down], lo_g[i_down], lo_s[i_down] = t[~up], g[~up], g[~up]
                hi_s[i_down] = torch.where(last[i_down] < 0, hi_s[i_down] / 2, hi_s[i_down])
                last[i_up], last[i_down] = 1.0, -1.0
        minimal_t = torch.where(crossed | already, hi_t, torch.full_like(hi_t, float("nan")))
        return minimal_t, hi_logits, hi_pixels

    def _result(self, flat, names, bases, face_of, space_of, alpha, minimal_t, steps_used, original_logits,
                end_logits, after_logits, pixels, sensitivity, spec: TargetSpec) -> CounterfactualResult:
        t = torch.nan_to_num(minimal_t, nan=0.0)
        end_gap = self._gap(end_logits, spec, face_of, self._threshold_logit())
        with torch.no_grad():
            end_deltas = self._edit(bases, space_of, alpha)
            deltas = end_deltas * t[:, None]
        to_p = (lambda z: z.softmax(dim=1)) if self.classifier.kind == "softmax" else torch.sigmoid
        mode, index = spec.mode[face_of], spec.index[face_of]
        p_before = _target_probability(to_p(original_logits)[face_of], mode, index)
        p_after = _target_probability(to_p(after_logits), mode, index)
        p_end = _target_probability(to_p(end_logits), mode, index)
        flipped = ~torch.isnan(minimal_t)
        min_edit = (alpha.norm(dim=1) * t).where(flipped, torch.full_like(t, float("nan")))
        table = pd.DataFrame({
            "face": face_of.cpu().numpy(), "subspace": [names[s] for s in space_of.tolist()],
            "flipped": flipped.cpu().numpy(), "min_edit": min_edit.cpu().numpy(),
            "min_edit_latent": deltas.norm(dim=1).where(flipped, torch.full_like(t, float("nan"))).cpu().numpy(),
            "end_edit": alpha.norm(dim=1).cpu().numpy(), "steps": steps_used.numpy(),
            "end_gap": end_gap.cpu().numpy(), "p_before": p_before.cpu().numpy(), "p_after": p_after.cpu().numpy(),
            "p_end": p_end.cpu().numpy(), "delta_prob": (p_end - p_before).cpu().numpy(),
            "pixel_l1": pixels[:, 0].cpu().numpy(), "pixel_l2": pixels[:, 1].cpu().numpy(),
            "sensitivity": sensitivity.detach().cpu().numpy(),
        })
        if self.classifier.kind == "sigmoid":
            on_before = original_logits[face_of] > self._threshold_logit()
            on_after = after_logits > self._threshold_logit()
            changed = (on_before != on_after)
            changed[torch.arange(len(index), device=changed.device), index] = False
            table["other_heads_flipped"] = changed.sum(dim=1).cpu().numpy()
        dims = [self.subspaces[names[s]].dim for s in space_of.tolist()]
        coefficients = [alpha[i, : dims[i]].tolist() for i in range(len(alpha))]
        settings = {"optimizer": self.optimizer, "loss": self.loss, "margin": self.margin, "beta": self.beta,
                    "unit": self.unit, "budget": self.budget, "steps": self.steps, "lr": self.lr, "patience": self.patience,
                    "batch_size": self.batch_size, "seed": self.seed, "boundary_steps": self.boundary_steps,
                    "classifier": self.classifier.name}
        return CounterfactualResult(self.space, tuple(self.subspaces.latent_shape), flat.detach().cpu(), names, table,
                                    deltas.detach().cpu(), end_deltas.detach().cpu(), coefficients, spec.description,
                                    settings, generator=self.generator)
