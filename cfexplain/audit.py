"""The audit: which semantics flip a classifier's decisions, how easily, with what side effects.

:func:`audit` draws faces, searches counterfactuals in every subspace
(:class:`~cfexplain.counterfactual.CounterfactualExplainer`), runs one *joint* search over all
subspaces at once (a group-lasso penalty keeps it to few semantics), attributes the joint edit's
effect on the decision to the semantics with captum's Integrated Gradients, and summarises:

``AuditResult.table``, one row per semantic:

* ``flip_rate``: fraction of faces whose decision the semantic flips within the edit budget;
* ``median_min_edit``: median minimal edit of the flipped faces, in the search's unit (default RMS
  image change): the distance to the decision boundary along the semantic;
* ``sensitivity``: median over faces of the decision gap's gradient norm per unit edit;
* ``mean_delta_prob``: mean change of the target probability at the search's end point;
* ``random_flip_rate``: the flip rate of a random subspace of the same dimension (same faces,
  budget and search): how fragile the decision is to *any* edit of that size. A semantic whose
  flip rate is not above it does not move the decision more than a generic edit does;
* ``specificity``: the subspace's specificity against random directions, as ``learn_subspaces``
  measured it (1 = random; NaN when not measured); :meth:`AuditResult.summary` says when the
  ranked-first semantic's is low (:func:`~cfexplain.subspaces.specificity.is_low_specificity`);
* ``side_effect``: how much the semantic's keep-invariant criteria moved in its minimal
  counterfactuals, relative to a random edit of the same latent size (0 = untouched, 1 = as much as
  a random edit), median over flipped faces (needs ``semantics``);
* ``other_heads_flipped`` (sigmoid classifiers): mean number of other heads that flipped (MNAC);
* ``attribution``: mean share of the joint counterfactual's decision change that Integrated
  Gradients attributes to the semantic;
* ``rank``: by flip rate, then by smaller minimal edit (1 = the semantic the classifier reacts to
  most easily); ``attribution_rank``: by attribution.

``AuditResult.metrics``: the standard counterfactual metrics of the per-semantic search (validity,
proximity in latent and pixel space) and of the joint search (validity, and sparsity: the mean
number of semantics a joint counterfactual needs: its edit restricted to the m semantics with the
largest attribution, for m = 1, 2, …, flips the decision from which m on).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ._checkpoint import Checkpoint
from ._fingerprint import fingerprint
from ._integrity import seal, verify
from ._io import atomic_write, read_versioned_json
from ._version import software_provenance
from ._shared import shared_analyses
from .classifiers import Classifier
from .counterfactual import CounterfactualExplainer, CounterfactualResult, attach_partial_result
from .counterfactual.baseline import BASELINE_NAME
from .counterfactual.joint import JOINT_BATCH_FACES, joint_counterfactuals, summarise_joint
from .counterfactual.result import merge_item_tables
from .distributed import Ranks, ranks_for
from .criteria.base import Criterion
from .errors import InputError
from .generators.base import Generator, make_rng
from .subspaces.core import Semantic, Subspace, SubspaceSet
from .subspaces.specificity import is_low_specificity

__all__ = ["AuditResult", "audit", "AUDIT_FORMAT_VERSION", "TABLE_COLUMNS"]

AUDIT_FORMAT_VERSION = 2
TABLE_COLUMNS = ("semantic", "flip_rate", "median_min_edit", "sensitivity", "mean_delta_prob", "random_flip_rate",
                 "random_median_min_edit", "random_sensitivity", "directions", "specificity", "side_effect", "other_heads_flipped",
                 "attribution", "rank", "attribution_rank")


@dataclass
class AuditResult:
    """The outcome of :func:`audit`.

    Attributes:
        table: one row per semantic (columns in the module docstring), ordered by ``rank``.
        counterfactuals: the per-semantic search (:class:`CounterfactualResult`).
        joint: one row per face of the joint search (``flipped, min_edit, sparsity`` = the number of
            semantics it needs, ``semantics_used``, and the coefficient norm per semantic).
        metrics: validity, proximity and sparsity (module docstring).
        target: the target, in words; settings: the audit settings; provenance: versions, generator,
            classifier, subspaces.
        baseline: the unconstrained control (one row, ``semantic`` = ``"latent_gradient"``, the
            table's columns where they apply; empty when not run): each face's search along its own
            latent gradient in the whole space (:mod:`cfexplain.counterfactual.baseline`), with
            ``side_effect`` over the keep criteria of all semantics together. Not ranked.
    """

    table: pd.DataFrame
    counterfactuals: CounterfactualResult
    joint: pd.DataFrame
    metrics: dict[str, float]
    target: str
    settings: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    baseline: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dataframe(self) -> pd.DataFrame:
        """The per-semantic table."""
        return self.table.copy()

    def ranking(self) -> list[str]:
        """Semantics from the one the classifier reacts to most easily to the least (tied
        semantics, which share a rank, in table order)."""
        return list(self.table.sort_values("rank", kind="stable")["semantic"])

    @property
    def nothing_flipped(self) -> bool:
        """Whether no semantic flipped any face within the budget (the ranking then follows the
        decision's sensitivity alone)."""
        return bool((self.table["flip_rate"] == 0).all())

    def summary(self) -> str:
        """What the ranking says, in a sentence or two, with its control."""
        unit = self.settings.get("unit", "image")
        budget = self.settings.get("budget")
        size = f"an RMS image change of {budget:g}" if unit == "image" else f"{budget:g} standard deviations"
        if self.nothing_flipped:
            return (f"Nothing flipped the decision within the budget ({size}) for any semantic: the ranking follows "
                    "the decision's movement per unit edit (the sensitivity column), a first-order measure; "
                    f"raise the budget to see flips.{self._photo_note()}")
        top = self.table.sort_values("rank", kind="stable").iloc[0]
        tied = list(self.table.loc[self.table["rank"] == top["rank"], "semantic"])
        lead = f"{', '.join(tied)} (tied)" if len(tied) > 1 else str(top["semantic"])
        control = ""
        if "random_flip_rate" in self.table and np.isfinite(top.get("random_flip_rate", np.nan)):
            control = f"; random subspaces of the same dimension: {top['random_flip_rate']:.0%}"
        if len(self.baseline):
            control += f"; the unconstrained latent gradient: {float(self.baseline['flip_rate'].iloc[0]):.0%}"
        return (f"Within {size}, {lead} flips the decision most easily: {top['flip_rate']:.0%} of the faces"
                f"{control}.{self._specificity_caveat(tied)}{self._photo_note()}")

    def _photo_note(self) -> str:
        """For photo audits: how many photos passed the faithfulness gate, and which the table uses."""
        photos = getattr(self.counterfactuals, "photos", None)
        if photos is None:
            return ""
        used = "all of them, unfaithful ones included" if self.settings.get("include_unfaithful") else \
            "the faithful ones only"
        return f" Photos: {photos.summary()}; the table uses {used}."

    def _specificity_caveat(self, names: Sequence[str]) -> str:
        """A sentence for the ranked-first semantics whose subspaces are no more specific than
        random directions (the ``specificity`` column; nothing when it was not measured)."""
        if "specificity" not in self.table:
            return ""
        rows = self.table.set_index("semantic").loc[list(names), "specificity"]
        low = [f"{name} {value:.2f}" for name, value in rows.items()
               if np.isfinite(value) and is_low_specificity(value)]
        if not low:
            return ""
        return (f" But its subspace is not clearly more specific than random directions (specificity "
                f"{', '.join(low)}; 1 = random): this is not evidence that the classifier uses that semantic.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able content (format version :data:`AUDIT_FORMAT_VERSION`)."""
        def records(frame: pd.DataFrame) -> list[dict]:
            return json.loads(frame.to_json(orient="records"))

        return {"format_version": AUDIT_FORMAT_VERSION, "target": self.target, "settings": self.settings,
                "provenance": self.provenance, "metrics": self.metrics, "semantics": records(self.table),
                "joint": records(self.joint), "items": records(self.counterfactuals.table),
                "baseline": records(self.baseline)}

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text, sealed with its integrity manifest (an edited or
        damaged ``audit.json`` is refused on load)."""
        return json.dumps(seal(self.to_dict(), {}), indent=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``audit.json``, ``table.csv`` and the counterfactuals (``counterfactuals/``) to a folder."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.counterfactuals.save(folder / "counterfactuals")
        text, csv = self.to_json(), self.table.to_csv(index=False)
        atomic_write(folder / "table.csv", lambda tmp: tmp.write_text(csv))
        atomic_write(folder / "audit.json", lambda tmp: tmp.write_text(text))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AuditResult":
        """Read an audit written by :meth:`save` (JSON and ``torch.load(weights_only=True)``: no code runs)."""
        folder = Path(path)
        data = read_versioned_json(folder / "audit.json", AUDIT_FORMAT_VERSION, "audit")
        verify(data, {}, folder / "audit.json", "audit")
        return cls(pd.DataFrame(data["semantics"]), CounterfactualResult.load(folder / "counterfactuals"),
                   pd.DataFrame(data["joint"]), data["metrics"], data["target"], data["settings"], data["provenance"],
                   pd.DataFrame(data.get("baseline", [])))


def _rank(table: pd.DataFrame) -> pd.Series:
    """Ranks at equal image change: by flip rate within the budget, then by the smaller median
    minimal edit, then by the larger decision sensitivity (the decision's movement per unit edit,
    which decides alone when nothing flips). Semantics equal on all three share a rank."""
    keys = [(-float(row.flip_rate), float(row.median_min_edit) if np.isfinite(row.median_min_edit) else np.inf,
             -float(row.sensitivity) if np.isfinite(row.sensitivity) else np.inf) for row in table.itertuples()]
    ranks = [1 + sum(other < key for other in keys) for key in keys]
    return pd.Series(ranks, index=table.index, dtype=int)


def _semantic_summary(items: pd.DataFrame, names: Sequence[str], prefix: str = "") -> dict[str, list[float]]:
    """Per subspace name: flip rate, median minimal edit of the flipped items (NaN when none
    flipped) and median decision sensitivity, as columns (``prefix`` + column name)."""
    grouped = items.groupby("subspace", sort=False)
    columns: dict[str, list[float]] = {f"{prefix}flip_rate": [], f"{prefix}median_min_edit": [],
                                       f"{prefix}sensitivity": []}
    for name in names:
        rows = grouped.get_group(name)
        columns[f"{prefix}flip_rate"].append(float(rows["flipped"].mean()))
        columns[f"{prefix}median_min_edit"].append(float(rows["min_edit"].median()) if rows["flipped"].any()
                                                   else float("nan"))
        columns[f"{prefix}sensitivity"].append(float(rows["sensitivity"].median()))
    return columns


def _random_subspaces(explainer: CounterfactualExplainer, names: list[str], seed: int) -> SubspaceSet:
    """One random orthonormal subspace per distinct dimension of the semantics ``names`` (shared
    by the semantics of that dimension), drawn from ``seed`` alike in every process."""
    subspaces = explainer.subspaces
    rng = make_rng(seed + 15485863)
    dim = int(np.prod(subspaces.latent_shape))
    dims = sorted({subspaces[name].dim for name in names})
    return SubspaceSet([Subspace(f"random-{k}", torch.linalg.qr(torch.randn(dim, k, generator=rng, dtype=torch.float64))[0]
                                 .to(subspaces[names[0]].basis.dtype), torch.ones(k), subspaces.space,
                                 tuple(subspaces.latent_shape)) for k in dims])


def _random_baseline(explainer: CounterfactualExplainer, items: pd.DataFrame, names: list[str],
                     seed: int) -> dict[str, list[float]]:
    """``random_flip_rate``, ``random_median_min_edit``, ``random_sensitivity`` per semantic of
    ``names``, from the items of the same search in the random subspaces (:func:`_random_subspaces`)."""
    subspaces = explainer.subspaces
    random = _random_subspaces(explainer, names, seed)
    columns = _semantic_summary(items, list(random), prefix="random_")
    position = {random[name].dim: i for i, name in enumerate(random)}
    return {column: [values[position[subspaces[name].dim]] for name in names] for column, values in columns.items()}


def _side_effect_ratios(generator: Generator, result: CounterfactualResult, global_rows: np.ndarray,
                        items: pd.DataFrame, keep_criteria: Mapping[str, Sequence[Criterion]], seed: int,
                        chunk: int) -> dict[str, tuple[list[int], list[float]]]:
    """Per subspace of ``result`` and flipped item: mean_k ‖Δkeep_k(minimal)‖ / ‖Δkeep_k(random
    edit of the same size)‖ over the subspace's ``keep_criteria``, as (item rows, ratios).

    ``items`` are the items of every process's search, in the order of one search over all the
    faces, and ``global_rows[j]`` is the row there of ``result``'s item ``j``. The random edits are
    drawn from ``seed`` for every flipped item, ``chunk`` items at a time in that order, as a single
    process draws them; this process measures its own items."""
    rng = make_rng(seed + 104729)
    local_of = {int(g): j for j, g in enumerate(global_rows)}
    ratios: dict[str, tuple[list[int], list[float]]] = {}
    for name in result.subspaces:
        keep = list(keep_criteria.get(name, ()))
        flipped = items.index[(items["subspace"] == name) & items["flipped"]].to_numpy()
        ratios[name] = ([], [])
        if not keep or len(flipped) == 0:
            continue
        mine, directions = [], []
        for start in range(0, len(flipped), chunk):
            block = flipped[start:start + chunk]
            random = torch.randn((len(block), result.deltas.shape[1]), generator=rng, dtype=result.deltas.dtype)
            for row, direction in zip(block, random):
                if int(row) in local_of:
                    mine.append(int(row))
                    directions.append(direction)
        for start in range(0, len(mine), chunk):
            rows = torch.tensor([local_of[g] for g in mine[start:start + chunk]], dtype=torch.long)
            random = torch.stack(directions[start:start + chunk])
            measured = _keep_ratios(generator, result, rows, random, keep)
            ratios[name][0].extend(mine[start:start + chunk])
            ratios[name][1].extend(measured.tolist())
    return ratios


def _keep_ratios(generator: Generator, result: CounterfactualResult, rows: torch.Tensor, random: torch.Tensor,
                 keep: Sequence[Criterion]) -> torch.Tensor:
    """For the items ``rows`` of ``result``: mean over ``keep`` of how far the criterion moved at
    the minimal counterfactual over how far it moves under ``random`` (rows rescaled to each
    item's latent edit length)."""
    faces = torch.tensor(result.table["face"].to_numpy()[rows.numpy()], dtype=torch.long)
    base, delta = result.codes[faces], result.deltas[rows]
    random = random / random.norm(dim=1, keepdim=True) * delta.norm(dim=1, keepdim=True)
    shape, device = (-1, *result.latent_shape), generator.device
    with torch.no_grad():
        x0 = generator.synthesize(base.reshape(shape).to(device), space=result.space)
        x1 = generator.synthesize((base + delta).reshape(shape).to(device), space=result.space)
        xr = generator.synthesize((base + random).reshape(shape).to(device), space=result.space)
        with shared_analyses():
            contexts = [c.prepare(x0) for c in keep]
        per_criterion = []
        for criterion, context in zip(keep, contexts):
            c0 = criterion.outputs(x0, context)
            moved = (criterion.outputs(x1, context) - c0).norm(dim=1)
            baseline = (criterion.outputs(xr, context) - c0).norm(dim=1).clamp_min(1e-12)
            per_criterion.append(moved / baseline)
    return torch.stack(per_criterion).mean(dim=0).cpu()


def _median_ratio(values: Sequence[float]) -> float:
    """The median side-effect ratio (torch's: the lower middle value), NaN without any."""
    return float(torch.tensor(values).median()) if len(values) else float("nan")


def audit(generator: Generator, classifier: Classifier, subspaces: SubspaceSet, *, n: int = 32, seed: int = 0,
          target: Any = "flip", budget: float | None = None, semantics: Sequence[Semantic] | None = None, joint: bool = True,
          attribution: bool = True, random_baseline: bool = True, group_weight: float = 0.1, joint_steps: int = 100,
          ig_steps: int = 32, images: Any = None, photo_options: Mapping[str, Any] | None = None,
          include_unfaithful: bool = False, baseline: bool = True, distributed: bool = False,
          checkpoint_dir: str | os.PathLike | None = None, **explainer_options: Any) -> AuditResult | None:
    """Audit ``classifier``: for ``n`` faces and every subspace, how easily does the semantic flip its decision?

    Args:
        generator, classifier, subspaces: what to audit with; the subspaces' latent space is used.
        n, seed: the faces (drawn with ``seed``).
        target: the decision change sought (see :func:`cfexplain.counterfactual.resolve_target`).
        budget: the largest edit, in the search's ``unit`` (default: RMS image change,
            :data:`~cfexplain.counterfactual.DEFAULT_BUDGETS`).
        semantics: the :class:`Semantic` objects the subspaces were learned from; their keep
            criteria give the ``side_effect`` column (NaN without them).
        joint, attribution: run the joint search and the Integrated-Gradients attribution.
        random_baseline: also search random subspaces of the same dimensions (``random_flip_rate``;
            doubles the search's cost).
        group_weight: weight of the group-lasso penalty of the joint search.
        joint_steps: the most Adam steps of the joint search.
        ig_steps: Integrated-Gradients steps.
        baseline: also run the unconstrained latent-gradient control (``AuditResult.baseline``).
        images: audit photos instead of ``n`` generated faces: a tensor ``(N, 3, H, W)`` in
            ``[-1, 1]``, an image file, a folder, a list of files, or an
            :class:`~cfexplain.photos.InversionResult`. They are aligned and inverted
            (``photo_options``: see :func:`~cfexplain.photos.photo_codes`), and each is gated: a
            photo whose reconstruction the classifier decides differently on is *unfaithful*.
            Every photo's counterfactuals are kept in ``counterfactuals`` (the ``faithful`` column
            flags them), but the table, the metrics, the random baseline and the joint search
            use the faithful photos only, unless ``include_unfaithful``.
        distributed: share the faces among the processes of the initialized ``torch.distributed``
            process group (:mod:`cfexplain.distributed`; generated faces only): each process
            searches its block of faces (whole blocks of
            :data:`~cfexplain.counterfactual.joint.JOINT_BATCH_FACES`, so ``n`` must give each
            process one) and rank 0 gathers the result, equal to a single-process audit's within
            floating-point tolerance. Every rank must call ``audit`` alike; rank 0
            returns the :class:`AuditResult`, the others ``None``.
        checkpoint_dir: save each process's finished work there (the searches after every batch,
            then each later stage) and resume from it: a rerun of the same audit redoes only
            what was not finished, each rank its own share.
        explainer_options: options of :class:`~cfexplain.counterfactual.CounterfactualExplainer`
            (``steps``, ``lr``, ``margin``, ``loss``, ``batch_size``, ``progress`` …).

    Returns:
        An :class:`AuditResult` (``None`` on the ranks other than 0 of a distributed audit).
        ``table`` is sorted by rank.

    If the audit stops with an exception, the counterfactuals found so far ride on it as
    ``error.partial_result`` (a :class:`~cfexplain.counterfactual.CounterfactualResult`: the
    per-semantic search's finished batches, or all of it when a later stage failed; in a
    distributed audit, this process's faces).
    """
    if len(subspaces) == 0:
        raise InputError("the subspace set is empty: nothing to audit")
    names = [name for name in subspaces if subspaces[name].dim > 0]
    if not names:
        raise InputError("every subspace of the set has 0 directions: nothing to audit")
    ranks = ranks_for(distributed)
    if ranks.world_size > 1:
        if images is not None:
            raise InputError("a distributed audit audits generated faces; audit photos in one process (or invert "
                             "them first, with cfexplain.invert, and audit the InversionResult in one process)")
        explainer_options["progress"] = explainer_options.get("progress", True) and ranks.is_main
    explainer = CounterfactualExplainer(generator, classifier, subspaces, budget=budget, seed=seed, ranks=ranks,
                                        **explainer_options)
    if ranks.world_size > 1:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"the number of faces must be a positive int, got {n!r}")
        ranks.check_shareable(n, "faces", block=JOINT_BATCH_FACES)
        mine = ranks.span(n, block=JOINT_BATCH_FACES)  # whole joint-search batches: each face as in one process
        codes, photos = generator.sample(len(mine), space=explainer.space, seed=seed, start=mine.start), None
    else:
        codes, photos = explainer.faces_or_photos(n if images is None else None, images, photo_options)
    included = torch.arange(len(codes))
    if photos is not None and not include_unfaithful:
        included = photos.faithful.nonzero()[:, 0]
        if len(included) == 0:
            raise InputError(f"no photo keeps its decision on its reconstruction ({photos.summary()}): nothing "
                             f"faithful to audit; pass include_unfaithful=True to audit them anyway")
    stages = _Stages(n=len(included) if ranks.world_size == 1 else n, seed=seed, budget=explainer.budget,
                     semantics=tuple(semantics or ()), joint=joint, attribution=attribution,
                     random_baseline=random_baseline, group_weight=group_weight, joint_steps=joint_steps,
                     ig_steps=ig_steps, photos=photos is not None, include_unfaithful=include_unfaithful,
                     baseline=baseline)
    work = _ShardWork(explainer, names, target, stages, ranks, checkpoint_dir)
    result = explainer.explain(codes, target=target, subspaces=names, baseline=baseline, checkpoint_dir=checkpoint_dir)
    if photos is not None:
        result = dataclasses.replace(result, photos=photos)
    try:
        summarised = result if len(included) == len(codes) else result.faces(included)
        parts = ranks.gather(work.run(codes[included.to(codes.device)], summarised))
        if parts is None:
            return None
        return _summarise(explainer, parts, names, stages, shown=result if ranks.world_size == 1 else None)
    except (Exception, KeyboardInterrupt) as error:  # the per-semantic search is kept on the exception
        attach_partial_result(error, lambda: result)
        raise


def _specificity(subspace: Subspace) -> float:
    """The subspace's measured specificity against random directions (NaN when not measured)."""
    measured = subspace.provenance.get("specificity")
    return float(measured["specificity"]) if measured else float("nan")


@dataclass(frozen=True)
class _Stages:
    """The audit's own settings: its faces and what runs after the per-semantic search."""

    n: int
    seed: int
    budget: float
    semantics: tuple[Semantic, ...]
    joint: bool
    attribution: bool
    random_baseline: bool
    group_weight: float
    joint_steps: int
    ig_steps: int
    photos: bool = False
    include_unfaithful: bool = False
    baseline: bool = False

    def settings(self) -> dict[str, Any]:
        """The settings as recorded in :attr:`AuditResult.settings` (the semantics are not)."""
        names = ["n", "seed", "budget", "joint", "attribution", "random_baseline", "group_weight", "joint_steps",
                 "ig_steps", "baseline"] + (["photos", "include_unfaithful"] if self.photos else [])
        return {name: getattr(self, name) for name in names}

    def keep_criteria(self) -> dict[str, list[Criterion]]:
        """The keep criteria of each semantic, and of all of them together for the baseline (each once)."""
        keep: dict[str, list[Criterion]] = {s.name: list(s.keep) for s in self.semantics}
        together: list[Criterion] = []
        for semantic in self.semantics:
            together += [c for c in semantic.keep if all(c is not k for k in together)]
        keep[BASELINE_NAME] = together
        return keep


@dataclass
class _Shard:
    """One process's audit work on its faces (all of them in a single process): the per-semantic
    search, the random control's items, the side-effect ratios by item row (rows of the items of
    every process, in single-process order), and the joint search's per-face table."""

    faces: int
    result: CounterfactualResult
    random: pd.DataFrame | None
    effects: dict[str, tuple[list[int], list[float]]]
    baseline_effects: tuple[list[int], list[float]]
    joint: pd.DataFrame | None


class _ShardWork:
    """A process's audit work around its per-semantic search: made before it (building every
    edit basis, the audit's collectives), it then runs the later stages, each saved to the
    process's checkpoint (when there is a ``checkpoint_dir``) as it finishes."""

    def __init__(self, explainer: CounterfactualExplainer, names: list[str], target: Any, stages: _Stages,
                 ranks: Ranks, checkpoint_dir: str | os.PathLike | None) -> None:
        self.explainer, self.names, self.target, self.stages = explainer, names, target, stages
        self.ranks, self.checkpoint_dir = ranks, checkpoint_dir
        # The edit bases are the collectives before the searches (the ranks share their image
        # metric's faces): all of them are built now, every process whether or not its checkpoint
        # holds a stage, so that the searches then run without waiting for each other.
        for name in names:
            explainer.edit_basis(name)
        self.control = self._random_control() if stages.random_baseline else None

    def run(self, codes: torch.Tensor, result: CounterfactualResult) -> _Shard:
        """The shard of the faces ``codes`` whose per-semantic search is ``result``."""
        explainer, stages = self.explainer, self.stages
        checkpoint, state = self._checkpoint(codes), {}
        if checkpoint is not None:
            state = checkpoint.load() or {}

        def stage(name: str, compute):
            if name not in state:
                state[name] = compute()
                if checkpoint is not None:
                    checkpoint.save(state)
            return state[name]

        random = None
        if self.control is not None:
            random = stage("random", lambda: _frame_state(self.control.explain(codes, target=self.target,
                                                                               checkpoint_dir=self.checkpoint_dir).table))
        joint_table = None
        if stages.joint:
            joint_table = stage("joint", lambda: _frame_state(joint_counterfactuals(
                explainer, codes, self.target, self.names, group_weight=stages.group_weight, steps=stages.joint_steps,
                ig_steps=stages.ig_steps, attribution=stages.attribution).table))
        global_rows, items = self._all_items(result)  # the one collective between the searches and the gather
        keep = stages.keep_criteria()
        effects = stage("side_effects", lambda: _side_effect_ratios(
            explainer.generator, result, global_rows, items, {s: keep[s] for s in self.names if s in keep},
            stages.seed, explainer.batch_size))
        baseline_effects = ([], [])
        if stages.baseline:  # chunks of 16, the baseline's own draws
            baseline_effects = stage("baseline_side_effects", lambda: _side_effect_ratios(
                explainer.generator, result, global_rows, items, {BASELINE_NAME: keep[BASELINE_NAME]}, stages.seed,
                16)[BASELINE_NAME])
        shipped = result if self.ranks.world_size == 1 else dataclasses.replace(result, generator=None)
        return _Shard(len(codes), shipped, None if random is None else _frame(random), effects,
                      tuple(baseline_effects), None if joint_table is None else _frame(joint_table))

    def _checkpoint(self, codes: torch.Tensor) -> Checkpoint | None:
        if self.checkpoint_dir is None:
            return None
        explainer, stages = self.explainer, self.stages
        key = fingerprint(codes, self.target, self.names, [explainer.subspaces[s].basis for s in self.names],
                          {k: v for k, v in explainer.options.items() if k != "progress"}, stages.settings(),
                          {s.name: s.describe() for s in stages.semantics}, self.ranks.rank, self.ranks.world_size,
                          explainer.classifier, explainer.generator)
        return Checkpoint(Path(self.checkpoint_dir) / f"audit-{key}.pt", "audit")

    def _random_control(self) -> CounterfactualExplainer:
        """The explainer of the same search in the random subspaces (:func:`_random_subspaces`),
        its edit bases built now."""
        explainer = self.explainer
        random = _random_subspaces(explainer, self.names, self.stages.seed)
        control = CounterfactualExplainer(explainer.generator, explainer.classifier, random, ranks=explainer.ranks,
                                          **explainer.options)
        for name in random:
            control.edit_basis(name)
        return control

    def _all_items(self, result: CounterfactualResult) -> tuple[np.ndarray, pd.DataFrame]:
        """Every process's items (face, subspace, flipped) in single-process order, and the row
        there of each of this process's items."""
        gathered = self.ranks.all_gather((len(result.codes), result.table[["face", "subspace", "flipped"]]))
        items, order = merge_item_tables([table for _, table in gathered], [faces for faces, _ in gathered])
        before = sum(len(table) for _, table in gathered[:self.ranks.rank])
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        return position[before:before + len(result.table)], items


def _frame_state(frame: pd.DataFrame) -> dict[str, Any]:
    """A table as plain lists (for a checkpoint read with ``weights_only``)."""
    return {"columns": list(frame.columns), "data": frame.to_dict(orient="list")}


def _frame(state: dict[str, Any]) -> pd.DataFrame:
    """The table of :func:`_frame_state`."""
    return pd.DataFrame(state["data"], columns=state["columns"])


def _summarise(explainer: CounterfactualExplainer, parts: Sequence[_Shard], names: list[str], stages: _Stages,
               shown: CounterfactualResult | None = None) -> AuditResult:
    """The audit's table and metrics from the processes' shards (one, in a single process); ``shown``
    (default: the shards' per-semantic searches) is the search kept in the result, which may hold
    more faces (unfaithful photos, flagged)."""
    generator, classifier, subspaces = explainer.generator, explainer.classifier, explainer.subspaces
    if len(parts) == 1:
        result = parts[0].result
    else:
        result = dataclasses.replace(CounterfactualResult.concatenate([part.result for part in parts]),
                                     generator=generator)
    everything = result.table
    items = everything[everything["subspace"] != BASELINE_NAME]
    grouped = items.groupby("subspace", sort=False)
    table = pd.DataFrame({"semantic": names, **_semantic_summary(items, names),
                          "mean_delta_prob": [float(grouped.get_group(s)["delta_prob"].mean()) for s in names],
                          "directions": [subspaces[s].dim for s in names],
                          "specificity": [_specificity(subspaces[s]) for s in names]})
    randoms = {}
    if stages.random_baseline:
        randoms = _random_baseline(explainer, pd.concat([part.random for part in parts], ignore_index=True), names,
                                   stages.seed)
    for column in ("random_flip_rate", "random_median_min_edit", "random_sensitivity"):
        table[column] = randoms.get(column, [float("nan")] * len(names))
    table["side_effect"] = [_median_ratio([r for part in parts for r in part.effects.get(s, ([], []))[1]])
                            for s in names]
    if "other_heads_flipped" in items:
        table["other_heads_flipped"] = [float(grouped.get_group(s)["other_heads_flipped"].mean()) for s in names]
    joint_frame, shares = pd.DataFrame(), {s: float("nan") for s in names}
    metrics: dict[str, float] = {}
    if stages.joint:
        offsets = np.cumsum([0] + [part.faces for part in parts])
        frames = [part.joint.assign(face=part.joint["face"].to_numpy() + offset) for part, offset in zip(parts, offsets)]
        joint_frame = pd.concat(frames, ignore_index=True)
        shares, metrics = summarise_joint(joint_frame, names)
    table["attribution"] = [shares[s] for s in names]
    table["rank"] = _rank(table)
    table["attribution_rank"] = table["attribution"].rank(ascending=False, method="min").astype("Int64")
    table = table.sort_values("rank").reset_index(drop=True)
    flipped = items[items["flipped"]]
    latent_l1 = result.deltas[torch.tensor(flipped.index.to_list(), dtype=torch.long)].abs().sum(dim=1)
    metrics.update({
        "validity": float(items["flipped"].mean()),
        "proximity_latent_l1": float(latent_l1.mean()) if len(flipped) else float("nan"),
        "proximity_latent_l2": float(flipped["min_edit_latent"].mean()) if len(flipped) else float("nan"),
        "proximity_std_units": float(flipped["min_edit"].mean()) if len(flipped) else float("nan"),
        "proximity_pixel_l1": float(flipped["pixel_l1"].mean()) if len(flipped) else float("nan"),
        "proximity_pixel_l2": float(flipped["pixel_l2"].mean()) if len(flipped) else float("nan"),
    })
    settings = {**stages.settings(), **result.settings}
    provenance = software_provenance(generator=dict(generator.provenance), classifier=classifier.name,
                                     labels=list(classifier.labels), subspaces=dict(subspaces.provenance),
                                     space=subspaces.space)
    control = pd.DataFrame()
    if stages.baseline:
        control = _baseline_row(result, [r for part in parts for r in part.baseline_effects[1]])
    return AuditResult(table, shown if shown is not None else result, joint_frame,
                       {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()},
                       result.target, settings, provenance, control)


def _baseline_row(result: CounterfactualResult, side_effects: Sequence[float]) -> pd.DataFrame:
    """The latent-gradient control's row: the table's search columns, and its side effect (the
    ratios on the keep criteria of every semantic together)."""
    items = result.table[result.table["subspace"] == BASELINE_NAME]
    row: dict[str, Any] = {"semantic": BASELINE_NAME, **{k: v[0] for k, v in _semantic_summary(items, [BASELINE_NAME]).items()},
                           "mean_delta_prob": float(items["delta_prob"].mean()), "directions": 1}
    row["side_effect"] = _median_ratio(side_effects)
    flipped = items[items["flipped"]]
    row["median_pixel_l2"] = float(flipped["pixel_l2"].median()) if len(flipped) else float("nan")
    return pd.DataFrame([row])
