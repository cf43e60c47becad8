""":func:`audit`: faces in, the per-semantic search, the stages, the table out."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd
import torch

from .._version import software_provenance
from ..classifiers import Classifier
from ..counterfactual import CounterfactualExplainer, CounterfactualResult, attach_partial_result
from ..counterfactual.joint import JOINT_BATCH_FACES, attribution_method
from ..counterfactual.settings import SearchSettings
from ..distributed import SINGLE_PROCESS, Ranks, ranks_for
from ..errors import CfexplainError, InputError
from ..generators.base import Generator
from ..photos.faithfulness import PhotoFaces
from ..photos.inversion import InversionResult
from ..photos.pipeline import Photos
from ..subspaces.core import Semantic, SubspaceSet
from .columns import COLUMNS
from .evidence import NO_EVIDENCE
from .result import AuditResult
from .runner import ShardParts, StageRunner
from .settings import AUTO, AuditSettings, auto_rounds
from .stages import AuditContext, Summary, stages_for

__all__ = ["audit", "MissingSemanticsWarning"]


class MissingSemanticsWarning(UserWarning):
    """An audit without the semantics of its subspaces: its side effects are not measured."""


def audit(generator: Generator, classifier: Classifier, subspaces: SubspaceSet,
          faces: int | Literal["auto"] | Photos = 32, *, target: Any = "flip", semantics: Sequence[Semantic] | None = None,
          distributed: bool = False, checkpoint_dir: str | os.PathLike | None = None,
          **options: Any) -> AuditResult | None:
    """Audit ``classifier``: for many faces and every subspace, does the decision react to the semantic
    more easily than to a random edit of the same size?

    Args:
        generator, classifier, subspaces: what to audit with; the subspaces' latent space is used.
        faces: the faces to audit, as one value:

            * a number: that many generated faces, drawn with the audit's ``seed`` (face ``i`` of
              a seed is the same face in every audit, whatever the number);
            * ``"auto"``: generated faces in rounds until every verdict is decided, at most
              ``max_faces`` (docs/audit.md, "Enough faces");
            * :class:`~cfexplain.photos.Photos` (or what it takes as ``images``: a tensor
              ``(N, 3, H, W)`` in ``[-1, 1]``, an image file or folder, a list of files, an
              :class:`~cfexplain.photos.InversionResult`): the photos are aligned and inverted
              with the options they carry, and each is gated: a photo whose reconstruction the
              classifier decides differently on is *unfaithful*. Every photo's counterfactuals
              are kept in ``counterfactuals`` (the ``faithful`` column flags them), but the table,
              the metrics and the later stages use the faithful photos only, unless
              ``include_unfaithful``.
        target: the decision change sought (see :func:`cfexplain.counterfactual.resolve_target`).
        semantics: the :class:`Semantic` objects the subspaces were learned from; their keep
            criteria give the ``side_effect`` column. Default: rebuilt from what the subspaces
            record (:func:`~cfexplain.presets.semantics_of`; a set learned from the presets
            records it); where they cannot be, a :class:`MissingSemanticsWarning` says why and the
            column is NaN.
        distributed: share the faces among the processes of the initialized ``torch.distributed``
            process group (:mod:`cfexplain.distributed`; a number of generated faces only): each
            process searches its block of faces (whole blocks of
            :data:`~cfexplain.counterfactual.joint.JOINT_BATCH_FACES`, so ``faces`` must give each
            process one) and rank 0 gathers the result, equal to a single-process audit's within
            floating-point tolerance. Every rank must call ``audit`` alike; rank 0 returns the
            :class:`AuditResult`, the others ``None``.
        checkpoint_dir: save each process's finished work there (the searches after every batch,
            then each later stage) and resume from it: a rerun of the same audit redoes only
            what was not finished, each rank its own share.
        options: the audit's settings (:class:`~cfexplain.audit.AuditSettings`: ``max_faces``,
            ``seed``, ``controls``, ``alpha``, ``joint``, ``attribution``, ``baseline``,
            ``group_weight``, ``joint_steps``, ``ig_steps``, ``include_unfaithful``) and the
            search's (:class:`~cfexplain.counterfactual.SearchSettings`: ``unit``, ``budget``,
            ``steps``, ``margin``, ``batch_size``, ``progress`` …).

    Returns:
        An :class:`AuditResult` (``None`` on the ranks other than 0 of a distributed audit), its
        ``table`` sorted by rank; ``summary()`` gives the answer in words.

    If the audit stops with an exception, the counterfactuals found so far ride on it as
    ``error.partial_result`` (a :class:`~cfexplain.counterfactual.CounterfactualResult`: the
    per-semantic search's finished batches, or all of it when a later stage failed; in a
    distributed audit, this process's faces).
    """
    count, photos_given = _faces_of(faces, options)
    if count is not None:
        options = {**options, "n": count}
    settings, search_options = _split_options(options)
    names = _audited_names(subspaces)
    ranks = ranks_for(distributed)
    if ranks.world_size > 1:
        if photos_given is not None:
            raise InputError("a distributed audit audits generated faces; audit photos in one process (or invert "
                             "them first, with cfexplain.invert, and audit the InversionResult in one process)")
        search_options["progress"] = search_options.get("progress", True) and ranks.is_main
    explainer = CounterfactualExplainer(generator, classifier, subspaces, seed=settings.seed, ranks=ranks,
                                        **search_options)
    if explainer.settings.black_box and settings.baseline:  # the latent-gradient control follows the gradient
        settings = settings.replace(baseline=False)
    if semantics is None:
        semantics = _recorded_semantics(subspaces, generator.device)
    if count == AUTO:
        if ranks.world_size > 1:
            raise InputError("faces='auto' adds generated faces in rounds in one process; give a distributed audit "
                             "a number of faces")
        return _audit_in_rounds(explainer, names, target, settings, tuple(semantics), checkpoint_dir)
    codes, photos, first_face = _faces(explainer, settings, ranks, photos_given)
    included = torch.arange(len(codes))
    if photos is not None and not settings.include_unfaithful:
        included = photos.faithful.nonzero()[:, 0]
        if len(included) == 0:
            raise InputError(f"no photo keeps its decision on its reconstruction ({photos.summary()}): nothing "
                             f"faithful to audit; pass include_unfaithful=True to audit them anyway")
    context = AuditContext(explainer, names, target, settings, tuple(semantics), ranks, checkpoint_dir)
    runner = StageRunner(context, stages_for(settings))  # every edit basis, before the searches
    result = explainer.explain(codes, target=target, subspaces=names, baseline=settings.baseline,
                               checkpoint_dir=checkpoint_dir)
    if photos is not None:
        result = result.with_photos(photos)
    try:
        searched = result if len(included) == len(codes) else result.faces(included)
        gathered = runner.run(codes[included.to(codes.device)], searched, first_face)
        if gathered is None:
            return None
        summary = runner.summarise(gathered)
        faces = len(included) if ranks.world_size == 1 else settings.n
        return _result(summary, context, result if ranks.world_size == 1 else summary.search, faces, photos)
    except (Exception, KeyboardInterrupt) as error:  # the per-semantic search is kept on the exception
        attach_partial_result(error, lambda: result)
        raise


def _audit_in_rounds(explainer: CounterfactualExplainer, names: list[str], target: Any, settings: AuditSettings,
                     semantics: tuple[Semantic, ...], checkpoint_dir: str | os.PathLike | None) -> AuditResult:
    """``faces="auto"``: faces in rounds (:func:`~cfexplain.audit.settings.auto_rounds`) until every
    verdict is decided or ``max_faces`` is reached. Each round searches only its new faces (faces
    of the same draw as a fixed audit's), and every look tests at ``alpha / looks`` (Bonferroni
    over the looks), so the family-wise error stays within ``alpha``."""
    rounds = auto_rounds(settings.max_faces)
    tested = settings.replace(alpha=settings.alpha / len(rounds))
    context = AuditContext(explainer, names, target, tested, semantics, SINGLE_PROCESS, checkpoint_dir)
    runner = StageRunner(context, stages_for(settings))
    parts: list[ShardParts] = []
    for start, stop in rounds:
        codes = explainer.generator.sample(stop - start, space=explainer.subspaces.space, seed=settings.seed, start=start)
        search = explainer.explain(codes, target=target, subspaces=names, baseline=settings.baseline,
                                   checkpoint_dir=checkpoint_dir)
        try:
            parts += runner.run(codes, search, start)
            summary = runner.summarise(parts)
        except (Exception, KeyboardInterrupt) as error:
            attach_partial_result(error, lambda: search)
            raise
        if not _open_verdicts(summary):
            break
    result = _result(summary, context, summary.search, stop, None)
    result.settings.update(n=stop, faces="auto", looks=len(rounds), alpha=settings.alpha,
                           alpha_per_look=tested.alpha)
    return result


def _open_verdicts(summary: Summary) -> list[str]:
    """The semantics more faces could still give evidence for: no evidence yet, with an effect
    interval that reaches what the faces can detect."""
    detectable = summary.metrics.get("detectable_effect", float("nan"))
    columns = summary.columns
    return [name for name, verdict, high in zip(summary.names, columns["verdict"], columns["effect_high"])
            if verdict == NO_EVIDENCE and high >= detectable]


def _split_options(options: Mapping[str, Any]) -> tuple[AuditSettings, dict[str, Any]]:
    """The audit's settings and the search's options of ``options``; unknown names are refused."""
    audit_names = {f.name for f in dataclasses.fields(AuditSettings)}
    search_names = {f.name for f in dataclasses.fields(SearchSettings)}
    unknown = sorted(set(options) - audit_names - search_names)
    if unknown:
        raise InputError(f"unknown audit option(s) {unknown}; the audit's settings are {sorted(audit_names)} and the "
                         f"search's {sorted(search_names)}")
    settings = AuditSettings(**{k: v for k, v in options.items() if k in audit_names})
    return settings, {k: v for k, v in options.items() if k in search_names and k != "seed"}


def _recorded_semantics(subspaces: SubspaceSet, device: torch.device) -> list[Semantic]:
    """The semantics the subspaces record (:func:`~cfexplain.presets.semantics_of`), or none, with a
    warning that says why the side effects are then not measured."""
    from ..presets import semantics_of

    try:
        return semantics_of(subspaces, device=device)
    except CfexplainError as exc:
        warnings.warn(f"side effects are not measured: {exc}", MissingSemanticsWarning, stacklevel=3)
        return []


def _audited_names(subspaces: SubspaceSet) -> list[str]:
    """The subspaces with at least one direction (an empty set, or one with none, is refused)."""
    if len(subspaces) == 0:
        raise InputError("the subspace set is empty: nothing to audit")
    names = [name for name in subspaces if subspaces[name].dim > 0]
    if not names:
        raise InputError("every subspace of the set has 0 directions: nothing to audit")
    return names


_PHOTO_SOURCES = (str, os.PathLike, torch.Tensor, InversionResult, list, tuple)


def _faces_of(faces: Any, options: Mapping[str, Any]) -> tuple[int | str | None, Photos | None]:
    """``faces`` as ``(number of generated faces or "auto", None)`` or ``(None, photos)``."""
    moved = {"n": "faces=<number>", "images": "faces=Photos(images, ...)", "photo_options": "Photos(images, align=, "
             "alignment=, inversion=)"}
    clash = sorted(set(options) & set(moved))
    if clash:
        raise InputError(f"audit takes its faces as one value: pass {moved[clash[0]]} instead of {clash[0]}=")
    if isinstance(faces, Photos):
        return None, faces
    if faces == AUTO or (isinstance(faces, int) and not isinstance(faces, bool)):
        return faces, None
    if isinstance(faces, _PHOTO_SOURCES):
        return None, Photos(faces)
    raise InputError(f"faces must be a number of faces, 'auto', or photos (cfexplain.photos.Photos, a tensor, a file, "
                     f"a folder, a list of files, an InversionResult), got {type(faces).__name__}")


def _faces(explainer: CounterfactualExplainer, settings: AuditSettings, ranks: Ranks,
           photos: Photos | None) -> tuple[torch.Tensor, PhotoFaces | None, int]:
    """This process's faces: its block of the ``n`` generated ones (and the first one's place
    among them), or the photos' codes."""
    if photos is not None:
        codes, gated, _ = photos.codes(explainer.generator, explainer.classifier, explainer.subspaces.space,
                                       progress=explainer.settings.progress)
        return codes, gated, 0
    explainer._check_memory(-(-settings.n // ranks.world_size), len(explainer.subspaces) * (1 + settings.controls))
    if ranks.world_size == 1:
        return explainer.generator.sample(settings.n, space=explainer.subspaces.space, seed=settings.seed), None, 0
    ranks.check_shareable(settings.n, "faces", block=JOINT_BATCH_FACES)
    mine = ranks.span(settings.n, block=JOINT_BATCH_FACES)  # whole joint-search batches: each face as in one process
    codes = explainer.generator.sample(len(mine), space=explainer.subspaces.space, seed=settings.seed, start=mine.start)
    return codes, None, mine.start


def _result(summary: Summary, context: AuditContext, shown: CounterfactualResult, faces: int,
            photos: PhotoFaces | None) -> AuditResult:
    """The :class:`AuditResult` of a summary; ``shown`` is the search kept in the result (it may hold
    more faces than the table counts: unfaithful photos, flagged)."""
    explainer, settings = context.explainer, context.settings
    kind = explainer.classifier.kind
    columns = {"semantic": summary.names, **summary.columns}
    table = pd.DataFrame({c.name: columns.get(c.name, [float("nan")] * len(summary.names)) for c in COLUMNS
                          if (c.when != "sigmoid" or kind == "sigmoid")
                          and (c.when != "black_box" or explainer.settings.black_box)})
    table = table.sort_values(["rank", "effect", "median_min_edit"], ascending=[True, False, True],
                              kind="stable").reset_index(drop=True)
    recorded = {**settings.to_dict(), "n": faces, "photos": photos is not None, **summary.search.settings,
                "attribution_method": attribution_method(explainer.settings.black_box, len(summary.names))
                if settings.joint and settings.attribution else None}
    classifier = explainer.classifier
    provenance = software_provenance(generator=dict(explainer.generator.provenance), classifier=classifier.name,
                                     labels=list(classifier.labels), preprocessing=dataclasses.asdict(classifier.preprocessing),
                                     subspaces=dict(explainer.subspaces.provenance), space=explainer.subspaces.space)
    return AuditResult(table, shown, summary.joint, summary.metrics, summary.search.target, recorded, provenance,
                       summary.baseline)
