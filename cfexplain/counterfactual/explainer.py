"""The batched counterfactual search (:class:`CounterfactualExplainer`): it keeps the options,
builds :class:`~cfexplain.counterfactual.search.SearchProblem` values, runs the engine's searches
(:mod:`cfexplain.counterfactual.search`) a batch at a time and assembles the result; the method is
described in the package's docstring and in ``docs/counterfactuals.md``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .._checkpoint import Checkpoint
from .._fingerprint import fingerprint
from ..classifiers import Classifier
from ..distributed import SINGLE_PROCESS, Ranks
from .._validation import check_fits_in_memory
from ..errors import InputError
from ..generators.base import Generator
from ..subspaces.core import SubspaceSet
from .baseline import BASELINE_NAME, with_latent_gradient
from .joint import JointResult, joint_counterfactuals
from .result import CounterfactualResult, attach_partial_result
from .queries import finite_difference_search
from .search import SearchChunk, SearchEnd, SearchProblem, adam_search, minimal_edit, newton_search
from .settings import SearchSettings
from .targets import resolve_target, target_probability
from .units import edit_bases

__all__ = ["CounterfactualExplainer", "check_search_memory"]


def check_search_memory(faces: int, searches: int, latent_shape: Sequence[int], *, batch_items: int = 0,
                        item_bytes: int = 0, device: torch.device | str = "cpu") -> None:
    """Refuse, before any work, ``faces`` faces × ``searches`` searches that would not fit in
    memory: the results (each face's code, each item's two edits of the search space, as floats) in
    the machine's memory, and a batch of ``batch_items`` items whose forward and backward pass keeps
    ``item_bytes`` each (:func:`saved_activation_bytes`) in the memory of ``device``. The message
    says how to split the work."""
    dim = math.prod(latent_shape)
    results = 4.0 * faces * dim * (1 + 2 * (searches + 1))
    what = f"searching {faces} faces in {searches} subspaces of a {dim}-dimensional space"
    way_out = ("Search fewer faces at a time, or share them among processes with torchrun (docs/distributed.md); "
               "a smaller batch_size (--batch-size) needs less for its activations.")
    activations = float(batch_items * item_bytes)
    if torch.device(device).type == "cuda":
        check_fits_in_memory(results, what, way_out)
        check_fits_in_memory(activations, f"a batch of {batch_items} items", way_out,
                             available=torch.cuda.get_device_properties(torch.device(device)).total_memory,
                             where="this GPU")
    else:
        check_fits_in_memory(results + activations, what, way_out)


def saved_activation_bytes(logits_of: Callable[[torch.Tensor], torch.Tensor], code: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass of ``logits_of(code)`` (one item), each
    storage counted once: what every item of a search batch holds at its peak."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits_of(code.detach().requires_grad_(True))
    return sum(storages.values())


@dataclass
class _Records:
    """Per item, what the searches found (filled a batch at a time)."""

    alpha: torch.Tensor
    steps: torch.Tensor
    end_logits: torch.Tensor
    minimal_logits: torch.Tensor
    minimal_t: torch.Tensor
    pixels: torch.Tensor
    sensitivity: torch.Tensor
    queries: torch.Tensor

    @classmethod
    def empty(cls, problem: SearchProblem) -> "_Records":
        items, like, logits = problem.items, problem.codes, problem.original_logits
        return cls(torch.zeros(items, problem.bases.shape[2], device=like.device, dtype=like.dtype),
                   torch.zeros(items, dtype=torch.long),
                   torch.zeros(items, logits.shape[1], device=like.device, dtype=logits.dtype),
                   torch.zeros(items, logits.shape[1], device=like.device, dtype=logits.dtype),
                   torch.zeros(items, device=like.device, dtype=like.dtype),
                   torch.zeros(items, 2, device=like.device, dtype=like.dtype),
                   torch.zeros(items, device=like.device, dtype=like.dtype),
                   torch.zeros(items, dtype=torch.long))

    def head(self, count: int) -> "_Records":
        """The first ``count`` items."""
        return _Records(*(getattr(self, f)[:count] for f in self.__dataclass_fields__))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The records as CPU tensors, by field (for a checkpoint)."""
        return {f: getattr(self, f).detach().cpu() for f in self.__dataclass_fields__}

    def load(self, saved: Mapping[str, torch.Tensor]) -> None:
        """Fill these records from :meth:`to_tensors` of records of the same problem."""
        for f in self.__dataclass_fields__:
            mine = getattr(self, f)
            if tuple(saved[f].shape) != tuple(mine.shape):
                raise InputError(f"checkpoint records {f} have shape {tuple(saved[f].shape)}, the search has "
                                 f"{tuple(mine.shape)}")
            mine.copy_(saved[f].to(mine.device))


class CounterfactualExplainer:
    """Batched counterfactual search in the subspaces of a :class:`SubspaceSet`.

    The constructor takes what is fixed (generator, classifier, subspaces) and the search's
    options (:class:`~cfexplain.counterfactual.settings.SearchSettings`, which holds their defaults
    and validates them); :meth:`explain` takes the faces, the target and, for one call, any option.

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
        beta: weight of ``‖α‖²`` (α in the edit unit), for ``"adam"``.
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
        seed: seed of face sampling and of the edit-unit estimates.
        progress: show progress.
        ranks: the processes of a distributed run (:mod:`cfexplain.distributed`), which then
            share the faces of the edit-unit estimates: every rank must build its edit bases in
            the same order (as a distributed :func:`~cfexplain.audit` does). Default: one process.
    """

    def __init__(self, generator: Generator, classifier: Classifier, subspaces: SubspaceSet, *,
                 ranks: Ranks = SINGLE_PROCESS, **options: Any) -> None:
        if not isinstance(subspaces, SubspaceSet) or len(subspaces) == 0:
            raise InputError("the explainer needs a non-empty SubspaceSet")
        if not isinstance(classifier, Classifier):
            raise InputError(f"classifier must be a cfexplain.Classifier, got {type(classifier).__name__}")
        generator.check_space(subspaces.space)
        if tuple(generator.latent_shape(subspaces.space)) != tuple(subspaces.latent_shape):
            raise InputError(f"the subspaces are for latent shape {subspaces.latent_shape} in space {subspaces.space!r}, "
                             f"the generator has {generator.latent_shape(subspaces.space)} there")
        self.generator, self.classifier, self.subspaces, self.ranks = generator, classifier, subspaces, ranks
        self.settings = self._resolved(SearchSettings().replace(**options) if options else SearchSettings())
        self._edit_bases: dict[str, torch.Tensor] = {}
        self._item_bytes: int | None = None  # one search item's activations, measured on first use

    def _resolved(self, settings: SearchSettings) -> SearchSettings:
        """``settings``, black-box for a classifier without gradients."""
        if not self.classifier.differentiable and not settings.black_box:
            return settings.replace(black_box=True)
        return settings

    @property
    def _space(self) -> str:
        return self.subspaces.space

    @property
    def _threshold_logit(self) -> float:
        """The logit of the classifier's decision threshold (sigmoid heads)."""
        t = self.classifier.output.threshold
        return math.log(t / (1 - t))

    def with_options(self, **changes: Any) -> CounterfactualExplainer:
        """A copy of this explainer with some options changed (``None`` values are ignored); the
        scaled bases are shared where they stay valid."""
        changes = {key: value for key, value in changes.items() if value is not None}
        other = CounterfactualExplainer(self.generator, self.classifier, self.subspaces, ranks=self.ranks)
        other.settings = self._resolved(self.settings.replace(**changes))
        unit_of = lambda s: (s.unit, s.scale_samples, s.image_samples, s.seed)  # noqa: E731
        if unit_of(other.settings) == unit_of(self.settings):
            other._edit_bases = self._edit_bases
        return other

    def prepare(self, subspaces: Sequence[str] | None = None) -> None:
        """Measure the edit unit of the named subspaces (default: all) now rather than at their
        first search: in a distributed run this takes collectives, so every rank prepares the same
        subspaces in the same order before searching (a distributed audit does)."""
        self._measure_edit_bases(self._names(subspaces))

    def explain_jointly(self, codes_or_seeds: torch.Tensor | int | Sequence[int], *, target: Any = "flip",
                        subspaces: Sequence[str] | None = None, group_weight: float = 0.1, steps: int = 100,
                        ig_steps: int = 32, attribution: bool = True) -> JointResult:
        """One counterfactual per face over all the subspaces at once, kept to few of them by a
        group lasso, with (``attribution``) each face's decision change attributed to the
        semantics by Integrated Gradients (:mod:`cfexplain.counterfactual.joint`).

        Args:
            codes_or_seeds, target, subspaces: as :meth:`explain`.
            group_weight: the group-lasso weight; steps: the most Adam steps; ig_steps: the
                Integrated-Gradients steps.

        Returns:
            A :class:`~cfexplain.counterfactual.joint.JointResult`, edits in the explainer's unit
            and budget.
        """
        names = self._names(subspaces)
        blocks = [self._edit_basis(name) for name in names]
        problem = self._problem(self._faces(codes_or_seeds), target, [torch.cat(blocks, dim=1)], every_pair=False)
        return joint_counterfactuals(problem, self.settings, names, [block.shape[1] for block in blocks],
                                     group_weight=group_weight, steps=steps, ig_steps=ig_steps, attribution=attribution,
                                     progress=self.settings.progress and self.ranks.is_main)

    def _names(self, subspaces: Sequence[str] | None) -> list[str]:
        """The named subspaces (default: all); unknown names and all-empty choices are refused."""
        names = list(subspaces) if subspaces is not None else list(self.subspaces)
        for name in names:
            self.subspaces[name]  # raises for unknown names
        if not names or max(self.subspaces[name].dim for name in names) == 0:
            raise InputError("all requested subspaces are empty (0 directions)")
        return names

    def _edit_basis(self, name: str) -> torch.Tensor:
        """``(D, k)``: subspace ``name``'s basis scaled so that a coefficient vector's norm is the
        edit's size in the unit (see :func:`~cfexplain.counterfactual.units.edit_basis`)."""
        self._measure_edit_bases([name])
        return self._edit_bases[name]

    def _measure_edit_bases(self, names: Sequence[str]) -> None:
        """Scale the bases of the named subspaces not yet scaled, measured together
        (:func:`~cfexplain.counterfactual.units.edit_bases`)."""
        names = [name for name in names if name not in self._edit_bases]
        s = self.settings
        scaled = edit_bases(self.generator, [self.subspaces[name] for name in names], s.unit,
                            scale_samples=s.scale_samples, image_samples=s.image_samples, seed=s.seed + 7919,
                            ranks=self.ranks, progress=s.progress and self.ranks.is_main)
        self._edit_bases.update(zip(names, scaled))

    def _faces(self, codes_or_seeds: torch.Tensor | int | Sequence[int]) -> torch.Tensor:
        """Codes ``(N, *latent_shape)`` from codes, a number of faces (drawn with the explainer's
        seed) or a list of seeds (one face each)."""
        if isinstance(codes_or_seeds, torch.Tensor):
            return self.generator.check_codes(codes_or_seeds, self._space)
        if isinstance(codes_or_seeds, int) and not isinstance(codes_or_seeds, bool):
            if codes_or_seeds < 1:
                raise InputError("the number of faces must be positive")
            self._check_memory(codes_or_seeds, len(self.subspaces))
            return self.generator.sample(codes_or_seeds, space=self._space, seed=self.settings.seed)
        seeds = list(codes_or_seeds)
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise InputError("codes_or_seeds must be codes, a number of faces or a list of int seeds")
        return torch.cat([self.generator.sample(1, space=self._space, seed=s) for s in seeds])

    def _check_memory(self, faces: int, searches: int) -> None:
        """:func:`check_search_memory` for ``faces`` × ``searches`` searches in batches of the
        settings' ``batch_size``, with one item's activations measured on the models."""
        if self._item_bytes is None:
            code = self.generator.sample(1, space=self._space, seed=0).reshape(1, -1)
            self._item_bytes = saved_activation_bytes(self._logits, code)
        check_search_memory(faces, searches, self.subspaces.latent_shape, batch_items=self.settings.batch_size,
                            item_bytes=self._item_bytes, device=self.generator.device)

    def _images(self, flat: torch.Tensor) -> torch.Tensor:
        """Images of flattened codes ``(N, D)`` of the search space."""
        return self.generator.synthesize(flat.reshape(-1, *self.subspaces.latent_shape), space=self._space)

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        """Classifier logits of flattened codes ``(N, D)`` (differentiable)."""
        return self.classifier.logits(self._images(flat))

    # ------------------------------------------------------------------ the search

    def _problem(self, codes: torch.Tensor, target: Any, bases: Sequence[torch.Tensor], *,
                every_pair: bool = True) -> SearchProblem:
        """A :class:`SearchProblem` over ``codes`` (``(N, *latent_shape)``) and scaled ``bases``
        (each ``(D, k_s)``): one item per face × basis (``every_pair``) or one per face, all in the
        first basis."""
        flat = codes.reshape(codes.shape[0], -1).detach()
        n, device, dtype = flat.shape[0], flat.device, flat.dtype
        with torch.no_grad():
            original_logits = torch.cat([self._logits(part) for part in flat.split(self.settings.batch_size)])
        spec = resolve_target(self.classifier, target, original_logits)
        k_max = max(b.shape[1] for b in bases)
        if k_max == 0:
            raise InputError("all requested subspaces are empty (0 directions)")
        padded = torch.zeros(len(bases), flat.shape[1], k_max, device=device, dtype=dtype)
        for s, basis in enumerate(bases):
            padded[s, :, : basis.shape[1]] = basis.to(device=device, dtype=dtype)
        face_of = torch.arange(n, device=device).repeat_interleave(len(bases) if every_pair else 1)
        subspace_of = torch.arange(len(bases), device=device).repeat(n) if every_pair else torch.zeros_like(face_of)
        return SearchProblem(flat, padded, face_of, subspace_of, spec, original_logits, self._threshold_logit,
                             self._images, self.classifier.logits)

    def _search(self, chunk: SearchChunk) -> SearchEnd:
        """Run the configured optimiser on a chunk (:func:`newton_search`, :func:`adam_search`, or
        :func:`~cfexplain.counterfactual.queries.finite_difference_search` for a black box)."""
        s = self.settings
        if s.black_box:
            return finite_difference_search(chunk, budget=s.budget, margin=s.margin, steps=s.steps, patience=s.patience,
                                            max_queries=s.max_queries, reserve=s.boundary_steps,
                                            batch_size=s.batch_size)
        if s.optimizer == "newton":
            return newton_search(chunk, budget=s.budget, margin=s.margin, steps=s.steps, patience=s.patience)
        return adam_search(chunk, budget=s.budget, margin=s.margin, loss=s.loss, beta=s.beta, lr=s.lr, steps=s.steps)

    def explain(self, codes_or_seeds: torch.Tensor | int | Sequence[int], *, target: Any = "flip",
                subspaces: Sequence[str] | None = None, budget: float | None = None, baseline: bool = False,
                checkpoint_dir: str | os.PathLike | None = None, **options: Any) -> CounterfactualResult:
        """Counterfactuals of every face in every subspace.

        Args:
            codes_or_seeds: codes in the subspaces' space, a number of faces, or a list of seeds.
                Photos reach the search as codes: :func:`~cfexplain.photos.photo_codes` aligns,
                inverts and gates them, and :meth:`CounterfactualResult.with_photos` attaches
                its record to the result.
            baseline: also search each face along its own latent gradient in the whole space
                (:mod:`cfexplain.counterfactual.baseline`; items named ``"latent_gradient"``), the
                unconstrained control for the subspaces.
            target: see :func:`resolve_target` (default: flip each face's decision).
            subspaces: names to search in (default: all).
            budget, options: settings of the constructor (``unit``, ``budget``, ``steps``,
                ``margin``, ``loss``, ``optimizer``, ``batch_size`` …) for this call only.
            checkpoint_dir: save the finished batches there after each batch, and resume from
                them: a rerun of the same search (same faces, target, subspaces, settings and
                models; the file is named by their fingerprint) skips the batches already done.

        Returns:
            A :class:`CounterfactualResult`.

        Items are searched in batches of ``batch_size``. If the search stops with an exception (a
        model error, out of memory, an interrupt), the items of the batches already finished are
        not lost: the exception carries them as ``error.partial_result``, a
        :class:`CounterfactualResult` (absent when no batch had finished).
        """
        if budget is not None or options:
            return self.with_options(budget=budget, **options).explain(codes_or_seeds, target=target, subspaces=subspaces,
                                                                       baseline=baseline, checkpoint_dir=checkpoint_dir)
        if baseline and self.settings.black_box:
            raise InputError("the latent-gradient control searches along the classifier's gradient, which a black-box "
                             "search does not use: pass baseline=False")
        names = self._names(subspaces)
        codes = self._faces(codes_or_seeds)
        problem = self._problem(codes, target, [self._edit_basis(name) for name in names])
        basis_names, basis_dims = list(names), [self.subspaces[name].dim for name in names]
        if baseline:
            problem = with_latent_gradient(problem, self.generator, self._space, self.settings.unit, batch_size=self.settings.batch_size,
                                           scale_samples=self.settings.scale_samples)
            basis_names += [BASELINE_NAME] * len(codes)
            basis_dims += [1] * len(codes)
        records = _Records.empty(problem)
        checkpoint = None
        if checkpoint_dir is not None:
            key = fingerprint(problem.codes, target, names, [self.subspaces[name].basis for name in names], baseline,
                              self._space,
                              {k: v for k, v in self.settings.to_dict().items() if k != "progress"}, self.classifier,
                              self.generator)
            checkpoint = Checkpoint(Path(checkpoint_dir) / f"counterfactuals-{key}.pt", "counterfactual search")
        saved = checkpoint.load() if checkpoint is not None else None
        finished = 0
        if saved is not None:
            records.load(saved["records"])
            finished = int(saved["finished"])
        from tqdm.auto import tqdm

        try:
            with tqdm(total=problem.items, initial=finished, desc="counterfactuals", unit="item",
                      disable=not self.settings.progress) as bar:
                for start in range(finished, problem.items, self.settings.batch_size):
                    rows = torch.arange(start, min(start + self.settings.batch_size, problem.items), device=problem.codes.device)
                    self._search_chunk(problem.chunk(rows), records)
                    finished = start + len(rows)
                    if checkpoint is not None:
                        checkpoint.save({"records": records.to_tensors(), "finished": finished})
                    bar.update(len(rows))
        except (Exception, KeyboardInterrupt) as error:  # keep the finished batches on the exception
            if finished:
                attach_partial_result(error, lambda: self._result(problem, basis_names, basis_dims,
                                                                  records.head(finished), finished))
            raise
        return self._result(problem, basis_names, basis_dims, records, problem.items)

    def _search_chunk(self, chunk: SearchChunk, records: _Records) -> None:
        """Search one chunk and its minimal edits into ``records``."""
        end = self._search(chunk)
        crossing = minimal_edit(chunk, end, margin=self.settings.margin, iterations=self.settings.boundary_steps,
                                batch_size=self.settings.batch_size)
        rows = chunk.rows
        records.alpha[rows], records.steps[rows.cpu()], records.end_logits[rows] = end.alpha, end.steps, end.logits
        records.minimal_t[rows], records.minimal_logits[rows], records.pixels[rows] = (crossing.t, crossing.logits,
                                                                                        crossing.pixels)
        records.sensitivity[rows] = end.sensitivity
        if end.queries is not None:
            records.queries[rows.cpu()] = end.queries + crossing.queries

    def _result(self, problem: SearchProblem, names: list[str], dims: list[int], records: _Records,
                count: int) -> CounterfactualResult:
        """The result of the first ``count`` items; ``names`` and ``dims``: per basis of the problem."""
        face_of, subspace_of = problem.face_of[:count], problem.subspace_of[:count]
        alpha, minimal_t = records.alpha, records.minimal_t
        t = torch.nan_to_num(minimal_t, nan=0.0)
        with torch.no_grad():
            end_deltas = torch.bmm(problem.bases[subspace_of], alpha[:, :, None])[:, :, 0]
            deltas = end_deltas * t[:, None]
        to_p = (lambda z: z.softmax(dim=1)) if self.classifier.kind == "softmax" else torch.sigmoid
        mode, index = problem.target.mode[face_of], problem.target.index[face_of]
        p_before = target_probability(to_p(problem.original_logits)[face_of], mode, index)
        p_after = target_probability(to_p(records.minimal_logits), mode, index)
        p_end = target_probability(to_p(records.end_logits), mode, index)
        flipped = ~torch.isnan(minimal_t)
        missing = torch.full_like(t, float("nan"))
        column = lambda values: values.detach().cpu().numpy()  # noqa: E731
        table = pd.DataFrame({
            "face": column(face_of), "subspace": [names[s] for s in subspace_of.tolist()], "flipped": column(flipped),
            "min_edit": column((alpha.norm(dim=1) * t).where(flipped, missing)),
            "min_edit_latent": column(deltas.norm(dim=1).where(flipped, missing)),
            "end_edit": column(alpha.norm(dim=1)), "steps": records.steps.numpy(),
            "end_gap": column(problem.gap(records.end_logits, face_of)), "p_before": column(p_before),
            "p_after": column(p_after), "p_end": column(p_end), "delta_prob": column(p_end - p_before),
            "pixel_l1": column(records.pixels[:, 0]), "pixel_l2": column(records.pixels[:, 1]),
            "sensitivity": column(records.sensitivity),
        })
        if self.settings.black_box:
            table["queries"] = records.queries.numpy()
        if self.classifier.kind == "sigmoid":
            on_before = problem.original_logits[face_of] > self._threshold_logit
            changed = on_before != (records.minimal_logits > self._threshold_logit)
            changed[torch.arange(len(index), device=changed.device), index] = False
            table["other_heads_flipped"] = column(changed.sum(dim=1))
        item_dims = [dims[s] for s in subspace_of.tolist()]
        coefficients = [alpha[i, : item_dims[i]].tolist() for i in range(len(alpha))]
        settings = {**{k: v for k, v in self.settings.to_dict().items() if k not in ("progress", "scale_samples", "image_samples")},
                    "classifier": self.classifier.name}
        return CounterfactualResult(self._space, tuple(self.subspaces.latent_shape), problem.codes.detach().cpu(),
                                    list(dict.fromkeys(names)),
                                    table, deltas.detach().cpu(), end_deltas.detach().cpu(), coefficients,
                                    problem.target.description, settings)
