"""The Jacobian engine: criterion metrics ``M_c = E_i[J_iᵀ J_i]`` without one backward pass per output.

For latent samples ``u_i`` and a criterion ``c``, ``J_i = ∂c(G(u))/∂u`` at ``u_i`` (``m_c × D``).
The metric ``M_c`` is returned as a factor ``F_c`` (``r × D``, ``M_c = F_cᵀ F_c``), which is all
the subspace solvers need. Three ways to get it:

* ``"forward"``: dense forward mode. ``D`` Jacobian-vector products (``torch.func.jvp``, batched
  with ``vmap``) give every criterion's full Jacobian at once: one generator pass per latent
  dimension, shared by all criteria. Exact; best when ``D`` is small (``z``, ``w``).
* ``"reverse"``: dense reverse mode. ``m_c`` vector-Jacobian products (``torch.func.vjp`` with
  ``vmap`` over one-hot cotangents) give the rows. Exact; best when a criterion has few outputs
  (landmarks, mean colours).
* ``"randomized"``: matrix-free. Random sketches ``J Ω`` (JVPs, shared by all criteria) grow an
  orthonormal basis ``Q_c`` of each criterion's output range, block by block, until the largest
  eigenvalue the basis misses is below a tolerance tied to the solver's threshold (adaptive
  rank); then
  ``F_c = Q_cᵀ J_c`` needs one VJP per basis vector. ``J_c`` is never formed. For large ``D`` with
  many outputs (StyleSpace pixel criteria).

``"auto"`` chooses per criterion from ``D``, its output count and the memory bound. Samples are
processed in batches (each sample's outputs depend only on its own latent, so a batch rides along
in every pass), with a progress bar; with ``checkpoint_dir`` the accumulated factors are saved
after every batch and a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import jvp, vjp, vmap

from ._fingerprint import update_with_module
from ._checkpoint import Checkpoint
from ._device import accumulation_dtype
from ._shared import shared_analyses
from .criteria.base import Context, Criterion
from .errors import InputError
from .generators.base import Generator
from .subspaces.solvers import factor_from_matrix

__all__ = ["METHODS", "MetricEstimate", "combine_estimates", "directional_changes", "estimate_metrics",
           "LatentImages"]

METHODS = ("auto", "forward", "reverse", "randomized")


class LatentImages:
    """Flattened latent codes ``(N, D)`` of one space → generator images (optionally stopping early)."""

    def __init__(self, generator: Generator, space: str, resolution: int | None = None) -> None:
        generator.check_space(space)
        if resolution is not None:
            generator.check_resolution(resolution)
        self.generator, self.space, self.resolution = generator, space, resolution
        self.shape = generator.latent_shape(space)
        self.dim = math.prod(self.shape)

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        codes = flat.reshape(flat.shape[0], *self.shape)
        return self.generator.generate(codes, self.space, "const", None, self.resolution)


@dataclass
class MetricEstimate:
    """Metric factors of several criteria, with how they were obtained.

    Attributes:
        factors: per criterion (by position in the input list), ``F`` with ``M = FᵀF`` (``r × D``).
        methods: the method used per criterion.
        output_sizes: the outputs ``m_c`` per criterion (of the last batch).
        samples: number of latent samples averaged.
        passes: generator passes per kind (``forward``, ``jvp``, ``vjp``), summed over samples: one
            pass is one image through the generator (a JVP or VJP of one vector counts as one).
        seconds: wall time.
    """

    factors: list[np.ndarray]
    methods: list[str]
    output_sizes: list[int]
    samples: int
    passes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_passes(self) -> int:
        """All generator passes, of every kind (see ``passes``)."""
        return sum(self.passes.values())


class _BatchProgress:
    """Moves a bar counted in samples through one batch as its passes complete, so that a batch
    of many passes shows progress (and the bar an ETA) long before it ends."""

    PASSES_SHARE = 0.85
    """The share of a batch's bar its passes cover; folding the rows into the factors, the rest."""

    def __init__(self, bar: Any, samples: int, planned_vectors: int) -> None:
        self.bar, self.samples, self.planned, self.done = bar, samples, max(planned_vectors, 1), 0.0
        self.origin = bar.n

    def _move_to(self, position: float) -> None:
        if position <= self.done:
            return
        self.done = min(position, self.samples)
        target = self.origin + self.done
        self.bar.update(target - self.bar.n)
        self.bar.n = target  # exact, so that the rounding of fractional steps never carries past the batch's end

    def __call__(self, vectors: int) -> None:
        """``vectors`` more tangent or cotangent vectors have gone through the batch."""
        share = self.PASSES_SHARE * self.samples
        self._move_to(min(self.done + share * vectors / self.planned, share))

    def folded(self, fraction: float) -> None:
        """``fraction`` of the batch's rows are folded into the factors."""
        share = self.PASSES_SHARE * self.samples
        self._move_to(self.samples if fraction >= 1 else share + (self.samples - share) * fraction)


def _no_progress(vectors: int) -> None:
    """A batch's progress, not shown."""


def _stack(out: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _compress(rows: np.ndarray) -> np.ndarray:
    """A factor with the same ``FᵀF`` and at most ``D`` rows: ``FᵀF`` formed in float64 and
    factored by its eigendecomposition, a fifth of the time of a QR of the tall ``F`` (numpy's:
    unlike torch's, the same bits at any torch thread count)."""
    if rows.shape[0] <= rows.shape[1]:
        return rows
    return factor_from_matrix(rows.T @ rows)


class _Batch:
    """One batch of samples: its latents, its criteria contexts and the function of the latents."""

    def __init__(self, images_of: LatentImages, criteria: Sequence[Criterion], latents: torch.Tensor) -> None:
        self.images_of, self.criteria, self.latents = images_of, list(criteria), latents

        with torch.no_grad(), shared_analyses():
            images = images_of(latents)
            self.contexts: list[Context] = [c.prepare(images) for c in self.criteria]
            self.sizes = [c.outputs(images, ctx).shape[1] for c, ctx in zip(self.criteria, self.contexts)]

    def activation_bytes(self) -> int:
        """Bytes of activations autograd keeps per image (generator and all criteria), counted with
        a saved-tensor hook during one forward pass of the batch; constants (weights, buffers,
        contexts) are not counted."""
        total = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal total
            if tensor.grad_fn is not None or tensor.requires_grad:
                total += tensor.numel() * tensor.element_size()
            return tensor

        latents = self.latents.detach().clone().requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), shared_analyses():
            images = self.images_of(latents)
            for criterion, context in zip(self.criteria, self.contexts):
                criterion.outputs(images, context)
        return total // latents.shape[0]

    def function(self, indices: Sequence[int]) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
        def outputs(latents: torch.Tensor) -> tuple[torch.Tensor, ...]:
            with shared_analyses():  # criteria on the same detector or parser share its pass
                images = self.images_of(latents)
                return tuple(self.criteria[i].outputs(images, self.contexts[i]) for i in indices)

        return outputs

    def concatenated(self, indices: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
        parts = self.function(indices)
        return lambda latents: torch.cat(parts(latents), dim=1)


def _forward_rows(batch: _Batch, indices: Sequence[int], chunk: int,
                  advance: Callable[[int], None] = _no_progress) -> list[torch.Tensor]:
    """Full Jacobians ``(B, m_c, D)`` of the given criteria by forward mode (filled in place, chunk
    by chunk of columns, so a batch holds one copy of its Jacobians)."""
    fn, u = batch.function(indices), batch.latents
    b, dim = u.shape
    jacobians = [torch.empty(b, batch.sizes[i], dim, dtype=u.dtype, device=u.device) for i in indices]
    eye = torch.eye(dim, dtype=u.dtype, device=u.device)
    for start in range(0, dim, chunk):
        tangents = eye[start:start + chunk][:, None, :].expand(-1, b, -1)
        outs = vmap(lambda t: jvp(fn, (u,), (t,))[1])(tangents)  # per criterion (k, B, m)
        for jacobian, out in zip(jacobians, outs):
            jacobian[:, :, start:start + out.shape[0]] = out.permute(1, 2, 0)
        advance(tangents.shape[0])
    return jacobians


def _reverse_rows(batch: _Batch, indices: Sequence[int], chunk: int,
                  advance: Callable[[int], None] = _no_progress) -> list[torch.Tensor]:
    """Full Jacobians ``(B, m_c, D)`` of the given criteria by reverse mode (one-hot cotangents).

    Each criterion gets its own pullback: a cotangent then flows back through that criterion's
    models only, not through every model of the group (a zero cotangent still costs a full pass).
    """
    u = batch.latents
    jacobians = []
    for i in indices:
        size = batch.sizes[i]
        _, pullback = vjp(batch.concatenated([i]), u)
        rows = []
        for start in range(0, size, chunk):
            count = min(chunk, size - start)
            cotangents = torch.zeros(count, u.shape[0], size, dtype=u.dtype, device=u.device)
            index = torch.arange(count, device=u.device)
            cotangents[index, :, start + index] = 1.0
            rows.append(vmap(lambda c: pullback(c)[0])(cotangents))  # (k, B, D)
            advance(count)
        jacobians.append(torch.cat(rows, dim=0).permute(1, 0, 2))  # (B, m_c, D)
    return jacobians


def directional_changes(generator: Generator, criteria: Sequence[Criterion], latents: torch.Tensor,
                        directions: torch.Tensor, *, space: str, resolution: int | None = None, chunk_size: int = 16,
                        progress: bool = False) -> list[torch.Tensor]:
    """Squared first-order change of each criterion's outputs along each direction, per sample.

    Args:
        generator, criteria, space, resolution: as for :func:`estimate_metrics`.
        latents: ``(N, *latent_shape(space))`` or ``(N, D)`` sample codes.
        directions: ``(D, K)`` edits (columns, in the flattened space; their length is the edit).
        chunk_size: directions (or output rows) per vmapped pass.

    Returns:
        Per criterion, ``(N, K)``: ``‖J_i d_j‖²`` for sample ``i`` and direction ``j``. Most
        criteria take one JVP per sample and direction, shared among them; a criterion with fewer
        outputs than directions, on models those passes do not run, takes its Jacobian rows by
        reverse mode instead (one VJP per output), as :func:`estimate_metrics` chooses with the
        directions in place of the latent dimensions.
    """
    images_of = LatentImages(generator, space, resolution)
    latents = latents.reshape(latents.shape[0], -1).to(device=generator.device, dtype=generator.dtype)
    if directions.ndim != 2 or directions.shape[0] != images_of.dim:
        raise InputError(f"directions must be (D, K) with D = {images_of.dim}, got {tuple(directions.shape)}")
    tangents = directions.T.to(device=generator.device, dtype=generator.dtype)
    from tqdm.auto import tqdm

    rows: list[list[torch.Tensor]] = [[] for _ in criteria]  # per criterion, per sample: (K,) on the device
    precise = accumulation_dtype(tangents.device)
    analyzers = [c.analyzers for c in criteria]
    for i in tqdm(range(latents.shape[0]), desc="directional changes", unit="sample", disable=not progress):
        batch = _Batch(images_of, criteria, latents[i:i + 1])
        methods = _choose("auto", batch.sizes, tangents.shape[0], 1, _UNBOUNDED, analyzers)
        forward = [c for c, m in enumerate(methods) if m != "reverse"]
        reverse = [c for c, m in enumerate(methods) if m == "reverse"]
        changes: dict[int, torch.Tensor] = {}
        if forward:
            fn = batch.function(forward)
            parts: list[list[torch.Tensor]] = [[] for _ in forward]
            for start in range(0, tangents.shape[0], chunk_size):
                part = tangents[start:start + chunk_size][:, None, :]
                outs = vmap(lambda t: jvp(fn, (batch.latents,), (t,))[1])(part)  # per criterion (k, 1, m)
                for store, out in zip(parts, outs):
                    store.append(out.detach().to(precise).square().sum(dim=(1, 2)))
            changes.update((c, torch.cat(part)) for c, part in zip(forward, parts))
        if reverse:
            for c, jacobian in zip(reverse, _reverse_rows(batch, reverse, chunk_size)):
                changes[c] = (jacobian[0].detach().to(precise) @ tangents.T.to(precise)).square().sum(dim=0)
        for c, store in enumerate(rows):
            store.append(changes[c])
    return [torch.stack(store).double().cpu() if store else torch.zeros(0, tangents.shape[0], dtype=torch.float64)
            for store in rows]


_UNBOUNDED = 2**62
"""No memory bound on a method choice (one sample's dense rows always fit)."""


def _orthonormalize(block: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Columns of ``block (B, m, k)`` made orthonormal and orthogonal to ``basis (B, m, r)``."""
    for _ in range(2):  # classical Gram-Schmidt, twice, for stability
        if basis is not None:
            block = block - basis @ (basis.transpose(1, 2) @ block)
    q, _ = torch.linalg.qr(block)
    if basis is not None:
        q = q - basis @ (basis.transpose(1, 2) @ q)
        q, _ = torch.linalg.qr(q)
    return q


def _randomized_rows(batch: _Batch, indices: Sequence[int], tolerances: Sequence[float], chunk: int,
                     block: int, max_rank: int | None, generator: torch.Generator, counts: dict[str, int],
                     advance: Callable[[int], None] = _no_progress) -> list[torch.Tensor]:
    """Factors ``(B, r_c, D)`` with ``FᵀF ≈ JᵀJ`` by adaptive randomized range finding.

    A criterion stops growing its basis once the largest eigenvalue its basis misses,
    ``‖(I − QQᵀ)J‖₂²`` (estimated from the newest sketch block), falls below
    ``tolerance · λ_max(JᵀJ)`` for every sample of the batch, or once the basis is complete
    (``r = min(m, D)``)."""
    u = batch.latents
    n, dim = u.shape
    sizes = [batch.sizes[i] for i in indices]
    caps = [min(s, dim) if max_rank is None else min(s, dim, max_rank) for s in sizes]
    bases: list[torch.Tensor | None] = [None] * len(indices)
    sketches: list[list[torch.Tensor]] = [[] for _ in indices]
    active = list(range(len(indices)))
    while active:
        fn = batch.function([indices[a] for a in active])
        k = block
        omega = torch.randn(k, dim, generator=generator, dtype=torch.float64).to(dtype=u.dtype, device=u.device)
        outs = []
        for start in range(0, k, chunk):
            tangents = omega[start:start + chunk][:, None, :].expand(-1, n, -1)
            part = vmap(lambda t: jvp(fn, (u,), (t,))[1])(tangents)
            outs.append(part)
            advance(tangents.shape[0])
        counts["jvp"] += k * n
        still = []
        for position, a in enumerate(active):
            y = torch.cat([o[position] for o in outs], dim=0).permute(1, 2, 0)  # (B, m, k)
            sketches[a].append(y)
            residual = y if bases[a] is None else y - bases[a] @ (bases[a].transpose(1, 2) @ y)
            # ≈ the largest eigenvalue the basis misses, ‖(I − QQᵀ)J‖₂², per sample (for a Gaussian
            # block, E[RRᵀ]/k is the residual's JJᵀ; noise only makes the estimate larger)
            missed = torch.linalg.matrix_norm(residual, ord=2) ** 2 / k
            everything = torch.cat(sketches[a], dim=2)
            top = torch.linalg.matrix_norm(everything, ord=2) ** 2 / everything.shape[2]  # ≈ λ_max
            new = _orthonormalize(y, bases[a])
            bases[a] = new if bases[a] is None else torch.cat([bases[a], new], dim=2)
            if bases[a].shape[2] >= caps[a]:
                bases[a] = bases[a][..., : caps[a]]
                continue
            if bool((missed <= tolerances[a] * top.clamp_min(torch.finfo(top.dtype).tiny)).all()):
                continue
            still.append(a)
        active = still
    fn = batch.concatenated(indices)
    _, pullback = vjp(fn, u)
    total = sum(sizes)
    offsets = np.cumsum([0, *sizes])
    factors = []
    for a, basis in enumerate(bases):
        r = basis.shape[2]
        rows = []
        for start in range(0, r, chunk):
            part = basis[..., start:start + chunk].permute(2, 0, 1)  # (k, B, m)
            cotangents = torch.zeros(part.shape[0], n, total, dtype=u.dtype, device=u.device)
            cotangents[..., offsets[a]:offsets[a + 1]] = part
            rows.append(vmap(lambda c: pullback(c)[0])(cotangents))
            advance(part.shape[0])
        counts["vjp"] += r * n
        factors.append(torch.cat(rows, dim=0).permute(1, 0, 2))  # (B, r, D)
    return factors


def _choose(method: str, sizes: Sequence[int], dim: int, batch: int, memory_limit: int,
            analyzers: Sequence[tuple[object, ...] | None] | None = None) -> list[str]:
    """Each criterion's method under ``"auto"``, from its output count, ``D``, the memory bound and
    the models it runs (:attr:`Criterion.analyzers`, ``None`` where unknown)."""
    if method != "auto":
        return [method] * len(sizes)
    analyzers = list(analyzers) if analyzers is not None else [None] * len(sizes)
    bytes_per = 8
    forward_memory = dim * batch * sum(s for s in sizes if s > dim) * bytes_per
    dense_forward_ok = dim <= 2048 and forward_memory <= memory_limit
    choice = []
    for size in sizes:
        if size <= dim and size <= 2048:
            choice.append("reverse")
        elif dense_forward_ok:
            choice.append("forward")
        else:
            choice.append("randomized")
    if "forward" not in choice:
        return choice
    # When forward passes run anyway, a reverse criterion joining them adds only its own tangent
    # arithmetic to each of the D passes, while staying costs a pass through the generator and its
    # models per output. A criterion whose models all run in the forward passes already joins them.
    running = {id(model) for c, models in zip(choice, analyzers) if c == "forward" and models for model in models}
    choice = ["forward" if c == "reverse" and models and {id(m) for m in models} <= running else c
              for c, models in zip(choice, analyzers)]
    # Where the models are unknown, criteria often share one (all landmark criteria share a
    # detector), so the remaining reverse group moves as a whole once its outputs add up to more
    # than D/2.
    unknown = sum(s for c, s, models in zip(choice, sizes, analyzers) if c == "reverse" and models is None)
    reverse_outputs = sum(s for c, s in zip(choice, sizes) if c == "reverse")
    if unknown and reverse_outputs > dim // 2:
        choice = ["forward" if c == "reverse" else c for c in choice]
    return choice


def _chunk_within(memory_limit_mb: float, per_image: int, images: int, requested: int) -> int:
    """The largest chunk ≤ ``requested`` whose vmapped passes stay within the memory bound, taking
    one vector of a pass to hold (at most) one image's activations per image of the batch."""
    if per_image <= 0:
        return requested
    return max(1, min(requested, int(memory_limit_mb * 2**20 // (per_image * images))))


def _fingerprint(images_of: LatentImages, criteria: Sequence[Criterion], latents: torch.Tensor, settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    update_with_module(digest, images_of.generator)
    digest.update(json.dumps([c.describe() for c in criteria], sort_keys=True, default=str).encode())
    digest.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    digest.update(latents.detach().cpu().double().numpy().tobytes())
    return digest.hexdigest()[:24]


def _checked_tolerances(criteria: Sequence[Criterion], method: str, batch_size: int, chunk_size: int,
                        block_size: int, tolerances: Sequence[float] | None) -> list[float]:
    """Validate :func:`estimate_metrics`'s settings; return one tolerance per criterion."""
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if not criteria:
        raise InputError("no criteria to estimate")
    if batch_size < 1 or chunk_size < 1 or block_size < 1:
        raise InputError("batch_size, chunk_size and block_size must be positive")
    tolerances = list(tolerances) if tolerances is not None else [1e-4] * len(criteria)
    if len(tolerances) != len(criteria):
        raise InputError(f"{len(tolerances)} tolerances for {len(criteria)} criteria")
    return tolerances


def _resume(checkpoint: Checkpoint | None, dim: int, n_criteria: int) -> dict[str, Any]:
    """The progress saved in ``checkpoint`` if there is any, else a fresh start."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        return {**saved, "rows": [r.numpy() for r in saved["rows"]]}
    return {"done": 0, "rows": [np.zeros((0, dim)) for _ in range(n_criteria)], "methods": None,
            "sizes": None, "passes": {"forward": 0, "jvp": 0, "vjp": 0}, "seconds": 0.0}


def _planned_vectors(batch: _Batch, methods: Sequence[str], block_size: int) -> int:
    """The tangent and cotangent vectors a batch will take, for its progress (the randomized method
    counted at its first round: its rank is found as it goes)."""
    dim = batch.latents.shape[1]
    return (dim if "forward" in methods else 0) + sum(
        size if m == "reverse" else 2 * min(block_size, size, dim) if m == "randomized" else 0
        for m, size in zip(methods, batch.sizes))


def _batch_rows(batch: _Batch, methods: Sequence[str], chunk: int, tolerances: Sequence[float], block_size: int,
                max_rank: int | None, rng: torch.Generator, passes: dict[str, int],
                advance: Callable[[int], None] = _no_progress) -> list[torch.Tensor]:
    """Each criterion's Jacobian rows (or sketch of them) on one batch, by its chosen method.

    ``passes`` is updated with the JVPs and VJPs spent; ``advance`` is told of every vector done.
    """
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(methods):
        groups.setdefault(m, []).append(i)
    b, dim = batch.latents.shape
    results: dict[int, torch.Tensor] = {}
    if "forward" in groups:
        results.update(zip(groups["forward"], _forward_rows(batch, groups["forward"], chunk, advance)))
        passes["jvp"] += dim * b
    if "reverse" in groups:
        results.update(zip(groups["reverse"], _reverse_rows(batch, groups["reverse"], chunk, advance)))
        passes["vjp"] += sum(batch.sizes[i] for i in groups["reverse"]) * b
    if "randomized" in groups:
        rows = _randomized_rows(batch, groups["randomized"], [tolerances[i] for i in groups["randomized"]],
                                chunk, block_size, max_rank, rng, passes, advance)
        results.update(zip(groups["randomized"], rows))
    return [results[i] for i in range(len(methods))]


def estimate_metrics(
    generator: Generator,
    criteria: Sequence[Criterion],
    latents: torch.Tensor,
    *,
    space: str,
    method: str = "auto",
    resolution: int | None = None,
    batch_size: int = 2,
    chunk_size: int = 16,
    tolerances: Sequence[float] | None = None,
    block_size: int = 32,
    max_rank: int | None = None,
    memory_limit_mb: float = 4096,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    sample_offset: int = 0,
) -> MetricEstimate:
    """Metric factors ``F_c`` (``M_c = F_cᵀF_c = mean_i J_iᵀJ_i``) of ``criteria`` at ``latents``.

    Args:
        generator: the generator.
        criteria: the criteria (each evaluated once per sample for its context).
        latents: ``(N, *latent_shape(space))`` or flattened ``(N, D)`` sample codes.
        space: their latent space.
        method: ``"auto"``, ``"forward"``, ``"reverse"`` or ``"randomized"``.
        resolution: stop synthesis at this resolution (criteria that work at ≤ 256² need no more).
        batch_size: samples per batch.
        chunk_size: at most this many tangent or cotangent vectors per vmapped pass (memory ∝
            chunk × batch); lowered automatically to stay within ``memory_limit_mb``.
        tolerances: randomized method only: per criterion, the fraction of its largest eigenvalue
            below which missed energy is acceptable (default 1e-4).
        block_size: randomized method: sketch columns added per round.
        max_rank: randomized method: cap on each criterion's basis size.
        memory_limit_mb: memory bound: vmapped passes are sized from the activations one image
            keeps (counted once, on the first batch), and "auto" keeps dense Jacobians only when
            they fit (else randomized). The generator's and criteria's own weights are not counted.
        seed: seed of the random sketches.
        checkpoint_dir: save progress after every batch there and resume from it.
        progress: show a progress bar.
        sample_offset: the index of ``latents[0]`` among all the samples of a run that is shared
            out in batch-aligned blocks (:mod:`cfexplain.distributed`): a batch's random sketches
            are seeded by its first sample's index there, so the blocks' estimates, merged with
            :func:`combine_estimates`, equal one estimate over all the samples.
    """
    tolerances = _checked_tolerances(criteria, method, batch_size, chunk_size, block_size, tolerances)
    images_of = LatentImages(generator, space, resolution)
    latents = latents.reshape(latents.shape[0], -1).to(device=generator.device, dtype=generator.dtype)
    if latents.shape[1] != images_of.dim:
        raise InputError(f"latents have {latents.shape[1]} values per sample, space {space!r} needs {images_of.dim}")
    n, dim = latents.shape
    settings = {"space": space, "method": method, "resolution": resolution, "tolerances": tolerances,
                "block": block_size, "max_rank": max_rank, "seed": seed, "batch": batch_size,
                **({"offset": sample_offset} if sample_offset else {})}
    checkpoint = None
    if checkpoint_dir is not None:
        key = _fingerprint(images_of, criteria, latents, settings)
        checkpoint = Checkpoint(Path(checkpoint_dir) / f"metrics-{key}.pt", "criterion metrics")
    state = _resume(checkpoint, dim, len(criteria))
    from tqdm.auto import tqdm

    start_time = time.perf_counter() - state["seconds"]
    per_image: int | None = None
    with tqdm(total=n, initial=state["done"], desc="criterion metrics", unit="sample", disable=not progress,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]") as bar:
        for start in range(state["done"], n, batch_size):
            batch = _Batch(images_of, criteria, latents[start:start + batch_size])
            b = batch.latents.shape[0]
            state["passes"]["forward"] += b
            methods = _choose(method, batch.sizes, dim, b, int(memory_limit_mb * 2**20),
                              [c.analyzers for c in criteria])
            if per_image is None:
                per_image = batch.activation_bytes()
                state["passes"]["forward"] += b
            state["methods"], state["sizes"] = methods, batch.sizes
            rng = torch.Generator().manual_seed(seed * 1_000_003 + sample_offset + start)
            advance = _BatchProgress(bar, b, _planned_vectors(batch, methods, block_size))
            rows = _batch_rows(batch, methods, _chunk_within(memory_limit_mb, per_image, b, chunk_size),
                               tolerances, block_size, max_rank, rng, state["passes"], advance)
            count = len(rows)
            rows.reverse()
            for i in range(count):  # each batch Jacobian is freed once folded into its factor
                new = rows.pop().detach().double().cpu().numpy().reshape(-1, dim)
                state["rows"][i] = _compress(np.concatenate([state["rows"][i], new], axis=0))
                advance.folded((i + 1) / count)
            state["done"] = start + b
            state["seconds"] = time.perf_counter() - start_time
            if checkpoint is not None:
                checkpoint.save({**state, "rows": [torch.from_numpy(r) for r in state["rows"]]})
    factors = [rows / math.sqrt(n) for rows in state["rows"]]
    return MetricEstimate(factors=factors, methods=state["methods"], output_sizes=state["sizes"], samples=n,
                          passes=dict(state["passes"]), seconds=time.perf_counter() - start_time)


def combine_estimates(parts: Sequence[MetricEstimate]) -> MetricEstimate:
    """One estimate over the samples of several (of disjoint samples, in sample order, such as the
    ranks' blocks of a distributed run): the metrics are sample-weighted means, ``passes`` add up,
    ``methods`` and ``output_sizes`` are the last part's (as for the last batch of one run) and
    ``seconds`` is the longest part's (the parts run side by side)."""
    if not parts:
        raise InputError("no estimates to combine")
    if len(parts) == 1:
        return parts[0]
    total = sum(part.samples for part in parts)
    factors = [_compress(np.concatenate([part.factors[i] * math.sqrt(part.samples) for part in parts], axis=0))
               / math.sqrt(total) for i in range(len(parts[0].factors))]
    passes = {kind: sum(part.passes.get(kind, 0) for part in parts) for kind in parts[0].passes}
    return MetricEstimate(factors=factors, methods=parts[-1].methods, output_sizes=parts[-1].output_sizes,
                          samples=total, passes=passes, seconds=max(part.seconds for part in parts))
