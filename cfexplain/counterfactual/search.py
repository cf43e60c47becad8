"""The counterfactual search engine: a batch of searches as one value, and the searches over it.

A :class:`SearchProblem` holds everything a batch of counterfactual searches needs: the faces'
flat codes, the (scaled) bases of the subspaces, which face and which subspace each *item* is,
the target and the original logits, and how to get images and logits from codes. Items are
searched a chunk at a time (:meth:`SearchProblem.chunk`, which also renders the chunk's original
faces so that image changes can be recorded for free).

The searches are functions of a chunk and their settings:

* :func:`newton_search`: linearised-gap (DeepFool) steps inside each item's subspace;
* :func:`adam_search`: Adam on a loss (margin or cross-entropy), optionally with a group lasso
  over groups of coefficients (the audit's joint search over stacked subspaces);
* :func:`minimal_edit`: the root search for the smallest edit along the found path that crosses
  the decision boundary.

:class:`~cfexplain.counterfactual.CounterfactualExplainer` builds problems and keeps options,
batching and partial results; :mod:`cfexplain.counterfactual.joint` runs the audit's joint search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .targets import TargetSpec, decision_gap, search_loss

__all__ = ["SearchProblem", "SearchChunk", "SearchEnd", "Crossing", "BackpropGradients", "newton_search", "adam_search",
           "minimal_edit"]

BOUNDARY_RTOL = 0.02
"""The minimal-edit search stops once the crossing is estimated within this fraction of ``t``."""


def image_change(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """``(N, 2)``: mean absolute and root-mean-square difference per image."""
    difference = images - originals
    return torch.stack([difference.abs().mean(dim=(1, 2, 3)), difference.square().mean(dim=(1, 2, 3)).sqrt()], dim=1)


@dataclass
class SearchProblem:
    """A batch of counterfactual searches, one *item* per (face, subspace) pair.

    Attributes:
        codes: ``(faces, D)`` the original faces' flattened codes.
        bases: ``(subspaces, D, k)`` each subspace's basis scaled to the edit unit, zero-padded to
            the widest; an item's edit is ``bases[subspace] @ α``.
        face_of, subspace_of: ``(items,)`` each item's face and subspace.
        target: the resolved target, per face.
        original_logits: ``(faces, classes)``.
        threshold_logit: the logit of a sigmoid head's decision threshold (``log(t / (1 − t))``).
        images_of: flat codes ``(N, D)`` → images.
        logits_of: images → classifier logits.
    """

    codes: torch.Tensor
    bases: torch.Tensor
    face_of: torch.Tensor
    subspace_of: torch.Tensor
    target: TargetSpec
    original_logits: torch.Tensor
    threshold_logit: float
    images_of: Callable[[torch.Tensor], torch.Tensor]
    logits_of: Callable[[torch.Tensor], torch.Tensor]

    @property
    def items(self) -> int:
        """Number of items."""
        return len(self.face_of)

    def gap(self, logits: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """The decision gap of ``logits`` for the items of ``faces`` (``≥ 0``: target reached)."""
        return decision_gap(logits, self.target.mode[faces], self.target.index[faces], self.threshold_logit)

    def chunk(self, rows: torch.Tensor, *, with_images: bool = True) -> SearchChunk:
        """The items ``rows``, with their faces' original images (for image changes) unless told not to."""
        faces = self.face_of[rows]
        originals = slot = None
        if with_images:
            unique, slot = faces.unique(return_inverse=True)
            with torch.no_grad():
                originals = self.images_of(self.codes[unique])
        return SearchChunk(self, rows, faces, self.subspace_of[rows], originals, slot)


@dataclass
class SearchChunk:
    """Some items of a :class:`SearchProblem`, searched together.

    Attributes:
        problem: the problem.
        rows: ``(n,)`` the items (positions in the problem).
        faces, subspaces: ``(n,)`` each item's face and subspace.
        originals: ``(faces_of_chunk, C, H, W)`` the original images of the chunk's faces, or
            ``None`` (then image changes are NaN); ``slot`` maps each item to its row there.
    """

    problem: SearchProblem
    rows: torch.Tensor
    faces: torch.Tensor
    subspaces: torch.Tensor
    originals: torch.Tensor | None
    slot: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.rows)

    def codes(self, alpha: torch.Tensor, where: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Flat codes of the items ``where`` (positions in the chunk) edited by ``alpha``."""
        bases = self.problem.bases[self.subspaces[where]]
        return self.problem.codes[self.faces[where]] + torch.bmm(bases, alpha[:, :, None])[:, :, 0]

    def gap(self, logits: torch.Tensor, where: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        return self.problem.gap(logits, self.faces[where])

    def logits(self, alpha: torch.Tensor, where: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Logits at the edited codes (differentiable)."""
        return self.problem.logits_of(self.problem.images_of(self.codes(alpha, where)))

    def probe(self, alpha: torch.Tensor, where: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and image change (mean absolute, RMS) at the edited codes, without gradient."""
        with torch.no_grad():
            images = self.problem.images_of(self.codes(alpha, where))
            logits = self.problem.logits_of(images)
            if self.originals is None:
                return logits, torch.full((len(images), 2), float("nan"), device=images.device, dtype=images.dtype)
            return logits, image_change(images, self.originals[self.slot[where]])

    def start_gradient(self) -> torch.Tensor:
        """``∇_α gap`` at ``α = 0`` per item, ``(n, k)``: one backward pass per distinct face,
        shared by all its subspaces (``∇_α gap = Bᵀ ∇_u gap``)."""
        unique, inverse = self.faces.unique(return_inverse=True)
        start = self.problem.codes[unique].clone().requires_grad_(True)
        logits = self.problem.logits_of(self.problem.images_of(start))
        (grad_u,) = torch.autograd.grad(self.problem.gap(logits, unique).sum(), start)
        bases = self.problem.bases[self.subspaces]
        return torch.bmm(bases.transpose(1, 2), grad_u[inverse][:, :, None])[:, :, 0]


@dataclass
class SearchEnd:
    """Where the search of a chunk stopped, per item.

    Attributes:
        alpha: ``(n, k)`` coefficients, in the edit unit.
        steps: ``(n,)`` steps taken.
        logits: ``(n, classes)`` at the end point.
        start_slopes: ``(n,)`` the gap's slope at ``t = 0`` along ``t·α``.
        pixels: ``(n, 2)`` mean absolute and RMS image change at the end point.
        sensitivity: ``(n,)`` ``‖∇_α gap‖`` at ``α = 0``: the decision's movement per unit edit.
        queries: ``(n,)`` classifier queries spent (a black-box search counts them; ``None``
            for a gradient search).
    """

    alpha: torch.Tensor
    steps: torch.Tensor
    logits: torch.Tensor
    start_slopes: torch.Tensor
    pixels: torch.Tensor
    sensitivity: torch.Tensor
    queries: torch.Tensor | None = None


def _onto_ball(alpha: torch.Tensor, budget: float) -> torch.Tensor:
    norm = alpha.norm(dim=1, keepdim=True)
    return torch.where(norm > budget, alpha * (budget / norm), alpha)


class BackpropGradients:
    """The decision gap's gradient in each item's coefficients by backpropagation: what
    :func:`newton_search` uses unless told otherwise. Its evaluations are not counted."""

    def start(self, chunk: SearchChunk, gap: torch.Tensor) -> torch.Tensor:
        """``∇_α gap`` at ``α = 0`` for every item (:meth:`SearchChunk.start_gradient`)."""
        return chunk.start_gradient()

    def at(self, chunk: SearchChunk, alpha: torch.Tensor, gap: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``∇_α gap`` at ``alpha`` for the items ``idx`` (whose gaps there are ``gap``)."""
        a = alpha.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(chunk.gap(chunk.logits(a, idx), idx).sum(), a)
        return grad

    def probe(self, chunk: SearchChunk, alpha: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and image change at ``alpha`` for the items ``idx``."""
        return chunk.probe(alpha, idx)

    def exhausted(self, idx: torch.Tensor) -> torch.Tensor:
        """Which of the items ``idx`` cannot afford another step (none: backpropagation is not rationed)."""
        return torch.zeros(len(idx), dtype=torch.bool, device=idx.device)

    def spent(self) -> torch.Tensor | None:
        """Classifier queries spent per item (``None``: not counted)."""
        return None


def newton_search(chunk: SearchChunk, *, budget: float, margin: float, steps: int, patience: int,
                  gradients: BackpropGradients | None = None) -> SearchEnd:
    """Linearised-gap (DeepFool) steps inside each item's subspace, projected onto the budget ball.

    Each step goes to where the linearised gap reaches ``2·margin`` by the smallest change of the
    coefficients (capped at the budget). An item stops once it has crossed the boundary, after
    ``patience`` steps without its gap improving by 1 % of the margin, once it sits on the
    budget sphere, stalled, and even the linearised gap cannot reach the boundary anywhere in the
    budget ball, or once ``gradients`` says it cannot afford another step. The gradients come
    from ``gradients`` (default :class:`BackpropGradients`, whose first gradient is shared by
    every subspace of a face; :class:`~cfexplain.counterfactual.queries.FiniteDifferences`
    estimates them from queries).
    """
    gradients = gradients or BackpropGradients()
    n, k = len(chunk), chunk.problem.bases.shape[2]
    like = chunk.problem.codes
    alpha = torch.zeros(n, k, device=like.device, dtype=like.dtype)
    steps_taken = torch.zeros(n, dtype=torch.long, device=like.device)
    logits = chunk.problem.original_logits[chunk.faces].clone()
    pixels = torch.zeros(n, 2, device=like.device, dtype=like.dtype)
    gap = chunk.gap(logits)
    grad = gradients.start(chunk, gap)
    start_grad = grad.clone()
    best, stalled = gap.clone(), torch.zeros(n, dtype=torch.long, device=like.device)
    active = (gap < 0) & ~gradients.exhausted(torch.arange(n, device=like.device))
    for step in range(1, steps + 1):
        idx = active.nonzero()[:, 0]
        if len(idx) == 0:
            break
        g = grad[idx]
        delta = g * ((2 * margin - gap[idx]) / g.square().sum(dim=1).clamp_min(1e-20))[:, None]
        alpha[idx] = _onto_ball(alpha[idx] + _onto_ball(delta, budget), budget)
        steps_taken[idx] = step
        logits[idx], pixels[idx] = gradients.probe(chunk, alpha[idx], idx)
        gap[idx] = chunk.gap(logits[idx], idx)
        improved = gap[idx] > best[idx] + 0.01 * margin
        stalled[idx] = torch.where(improved, torch.zeros_like(stalled[idx]), stalled[idx] + 1)
        best[idx] = torch.maximum(best[idx], gap[idx])
        stop = (gap[idx] >= 0) | (stalled[idx] >= patience) | gradients.exhausted(idx)
        active[idx[stop]] = False
        going = idx[~stop]
        if len(going) and step < steps:
            grad[going] = gradients.at(chunk, alpha[going], gap[going], going)
            # Give up on items that stalled at the budget and whose linearised gap cannot reach
            # the boundary anywhere on the budget ball: max_{‖α'‖ ≤ B} gap + ∇gapᵀ(α' − α) < 0.
            g, a = grad[going], alpha[going]
            on_sphere = a.norm(dim=1) >= budget * (1 - 1e-4)
            reachable = gap[going] + budget * g.norm(dim=1) - (g * a).sum(dim=1)
            active[going[on_sphere & (reachable < 0) & (stalled[going] > 0)]] = False
    return SearchEnd(alpha, steps_taken.cpu(), logits, (start_grad * alpha).sum(dim=1), pixels, start_grad.norm(dim=1),
                     gradients.spent())


def adam_search(chunk: SearchChunk, *, budget: float, margin: float, loss: str, beta: float, lr: float, steps: int,
                groups: torch.Tensor | None = None, group_weight: float = 0.0) -> SearchEnd:
    """Adam on ``loss`` (``"margin"`` or ``"ce"``) + ``beta‖α‖²``, each item stopping once its gap
    reaches ``margin``; coefficients projected onto the budget ball after every step.

    With ``groups`` (the group of each coefficient), ``group_weight · Σ_g ‖α_g‖`` is added to the
    loss (a group lasso: it keeps a joint edit over stacked subspaces to few of them).
    """
    n, k = len(chunk), chunk.problem.bases.shape[2]
    like = chunk.problem.codes
    alpha = torch.zeros(n, k, device=like.device, dtype=like.dtype)
    m, v = torch.zeros_like(alpha), torch.zeros_like(alpha)
    active = torch.ones(n, dtype=torch.bool, device=like.device)
    steps_taken = torch.zeros(n, dtype=torch.long, device=like.device)
    target, tau = chunk.problem.target, chunk.problem.threshold_logit
    b1, b2, eps = 0.9, 0.999, 1e-8
    grouped = groups is not None and group_weight > 0
    group_count = int(groups.max()) + 1 if grouped else 0  # read once, not once per step
    for step in range(1, steps + 1):
        idx = active.nonzero()[:, 0]
        if len(idx) == 0:
            break
        a = alpha[idx].clone().requires_grad_(True)
        logits = chunk.logits(a, idx)
        mode, index = target.mode[chunk.faces[idx]], target.index[chunk.faces[idx]]
        gap = decision_gap(logits, mode, index, tau)
        done = gap.detach() >= margin
        objective = search_loss(logits, gap, mode, index, loss, margin, tau) + beta * a.square().sum(dim=1)
        if grouped:
            group_squares = torch.zeros(len(idx), group_count, dtype=a.dtype, device=a.device)
            group_squares = group_squares.index_add(1, groups, a.square())
            objective = objective + group_weight * (group_squares + 1e-12).sqrt().sum(dim=1)
        (grad,) = torch.autograd.grad(objective.sum(), a)
        grad = torch.where(done[:, None], torch.zeros_like(grad), grad)
        m[idx] = b1 * m[idx] + (1 - b1) * grad
        v[idx] = b2 * v[idx] + (1 - b2) * grad.square()
        update = lr * (m[idx] / (1 - b1**step)) / ((v[idx] / (1 - b2**step)).sqrt() + eps)
        alpha[idx] = _onto_ball(torch.where(done[:, None], a.detach(), a.detach() - update), budget)
        steps_taken[idx] = step
        active[idx[done]] = False
    end_logits, pixels = chunk.probe(alpha)
    start_grad = chunk.start_gradient()
    return SearchEnd(alpha, steps_taken.cpu(), end_logits, (start_grad * alpha).sum(dim=1), pixels, start_grad.norm(dim=1))


def _quadratic_root(value0: torch.Tensor, slope0: torch.Tensor, value1: torch.Tensor) -> torch.Tensor:
    """Per item, the root in [0, 1] of the quadratic ``q`` with ``q(0) = value0 < 0``, ``q'(0) = slope0``
    and ``q(1) = value1 ≥ 0`` (there is exactly one); NaN where the inputs do not allow it."""
    curvature = value1 - value0 - slope0
    root_of_discriminant = (slope0.square() - 4 * curvature * value0).clamp_min(0).sqrt()
    denominator = slope0 + root_of_discriminant
    t = -2 * value0 / denominator  # (−b + √(b² − 4ac)) / 2a, written without cancellation
    usable = torch.isfinite(t) & (denominator > 0) & (value0 < 0) & (value1 >= 0) & (t > 0) & (t < 1)
    return torch.where(usable, t, torch.full_like(t, float("nan")))


@dataclass
class Crossing:
    """Where each item's path crosses the decision boundary.

    Attributes:
        t: ``(n,)`` the smallest ``t ∈ [0, 1]`` where ``u0 + t·edit`` reaches the target (0 where the
            face already meets it; NaN where the path's end does not cross).
        logits: ``(n, classes)`` at the crossing (the original logits where not crossed).
        pixels: ``(n, 2)`` the image change there (0 where not crossed).
        queries: ``(n,)`` the probes (classifier queries) the root search spent per item.
    """

    t: torch.Tensor
    logits: torch.Tensor
    pixels: torch.Tensor
    queries: torch.Tensor


@dataclass
class _Bracket:
    """The regula-falsi state of a chunk: ``gap(lo) < 0 ≤ gap(hi)``, the ends' true gaps and their
    Illinois-scaled values, and the logits and image change at ``hi``."""

    lo_t: torch.Tensor
    hi_t: torch.Tensor
    lo_g: torch.Tensor
    hi_g: torch.Tensor
    lo_s: torch.Tensor
    hi_s: torch.Tensor
    hi_logits: torch.Tensor
    hi_pixels: torch.Tensor
    last: torch.Tensor  # +1: hi moved last, −1: lo moved last

    def update(self, idx: torch.Tensor, t: torch.Tensor, g: torch.Tensor, logits: torch.Tensor,
               pixels: torch.Tensor) -> None:
        """Move the end of the bracket that ``t`` replaces (Illinois: halve the stale end's gap)."""
        up = g >= 0
        i_up, i_down = idx[up], idx[~up]
        self.hi_t[i_up], self.hi_g[i_up], self.hi_s[i_up] = t[up], g[up], g[up]
        self.hi_logits[i_up], self.hi_pixels[i_up] = logits[up], pixels[up]
        self.lo_s[i_up] = torch.where(self.last[i_up] > 0, self.lo_s[i_up] / 2, self.lo_s[i_up])
        self.lo_t[i_down], self.lo_g[i_down], self.lo_s[i_down] = t[~up], g[~up], g[~up]
        self.hi_s[i_down] = torch.where(self.last[i_down] < 0, self.hi_s[i_down] / 2, self.hi_s[i_down])
        self.last[i_up], self.last[i_down] = 1.0, -1.0


def minimal_edit(chunk: SearchChunk, end: SearchEnd, *, margin: float, iterations: int, batch_size: int) -> Crossing:
    """The smallest ``t`` in [0, 1] where ``u0 + t·edit`` crosses the boundary, per item, and the
    logits and image change there.

    Regula falsi, Illinois variant: the bracket ``[lo, hi]`` always has ``gap(lo) < 0 ≤ gap(hi)``
    and the reported ``t`` is ``hi``, so the minimal counterfactual does reach the target. An item
    is done once the bracket is narrower than 0.5 % of the path, or once ``gap(hi)`` is within
    ``0.1·margin`` of the boundary and the secant's estimate of the crossing lies within 2 % of
    ``hi`` (where the gap is flat near the boundary, a small gap alone would leave ``hi`` far beyond
    the crossing). Where the gap's slope at ``t = 0`` is known, the first guess is where the
    quadratic through ``gap(0)``, that slope and ``gap(1)`` reaches ``0.05·margin``, instead of the
    secant's root. Probes run ``batch_size`` at a time.
    """
    original_logits = chunk.problem.original_logits[chunk.faces]
    lo_g, hi_g = chunk.gap(original_logits), chunk.gap(end.logits)
    already, crossed = lo_g >= 0, hi_g >= 0
    state = _Bracket(torch.zeros_like(lo_g), torch.ones_like(hi_g), lo_g, hi_g.clone(), lo_g.clone(), hi_g.clone(),
                     torch.where(crossed[:, None], end.logits, original_logits),
                     torch.where(crossed[:, None], end.pixels, torch.zeros_like(end.pixels)), torch.zeros_like(lo_g))
    state.hi_logits[already], state.hi_pixels[already], state.hi_t[already] = original_logits[already], 0.0, 0.0
    pending = crossed & ~already
    first_guess = _quadratic_root(lo_g - 0.05 * margin, end.start_slopes, hi_g - 0.05 * margin)
    queries = torch.zeros(len(lo_g), dtype=torch.long)
    with torch.no_grad():
        for iteration in range(iterations):
            secant = state.lo_t + (state.hi_t - state.lo_t) * state.lo_g / (state.lo_g - state.hi_g)  # true gaps
            close = (state.hi_g <= 0.1 * margin) & (state.hi_t - secant <= BOUNDARY_RTOL * state.hi_t)
            pending &= ((state.hi_t - state.lo_t) > 5e-3) & ~close
            idx = pending.nonzero()[:, 0]
            if len(idx) == 0:
                break
            lo, hi = state.lo_t[idx], state.hi_t[idx]
            t = (lo * state.hi_s[idx] - hi * state.lo_s[idx]) / (state.hi_s[idx] - state.lo_s[idx])
            if iteration == 0:
                t = torch.where(torch.isfinite(first_guess[idx]), first_guess[idx], t)
            t = torch.minimum(torch.maximum(t, lo + 1e-4 * (hi - lo)), hi - 1e-4 * (hi - lo))
            probes = [chunk.probe(end.alpha[part] * tt[:, None], part)
                      for part, tt in zip(idx.split(batch_size), t.split(batch_size))]
            logits, pixels = torch.cat([p[0] for p in probes]), torch.cat([p[1] for p in probes])
            state.update(idx, t, chunk.gap(logits, idx), logits, pixels)
            queries[idx.cpu()] += 1
    t = torch.where(crossed | already, state.hi_t, torch.full_like(state.hi_t, float("nan")))
    return Crossing(t, state.hi_logits, state.hi_pixels, queries)
