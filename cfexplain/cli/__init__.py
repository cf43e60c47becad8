"""The ``cfexplain`` command line.

Exit codes: 0 success; 1 an audit gate (``--fail-if``) held, and nothing else; 2 bad usage, bad
input or configuration (one line on standard error); 3 an internal error (one line; the traceback
with ``--debug``); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); both keep the finished
counterfactuals.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._version import __version__
from ..audit import AuditSettings
from ..audit.settings import AUTO
from .._options import cli_fields
from ..counterfactual.settings import SearchSettings
from .._defaults import INVERSION_STEPS, LEARNING_FACES, LEARNING_SEED
from .._launch import launched_by_torchrun, processes_on_this_machine
from ..errors import CfexplainError, InputError, describe_exception
from ..threads import AUTO_THREADS, auto_threads, set_threads
from .config import load_config
from .commands import (EXIT_GATE_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE,
                       EXPLAIN_FACES, run_audit, run_demo, run_explain, run_learn, run_photos,
                       run_report)

__all__ = ["EXIT_GATE_FAILED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE",
           "build_parser", "main"]

DISTRIBUTED_COMMANDS = ("learn", "audit")
"""The subcommands that run under ``torchrun``, sharing their work among the processes."""

_DEFAULTS = SearchSettings()
"""The search defaults the help text quotes (the library's own)."""


class _Subcommands(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as far as the subcommand builders use it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


_EPILOG = ("Exit codes: 0 success, 1 an audit gate (--fail-if) held, 2 bad usage, input or configuration, "
           "3 internal error (--debug shows the traceback), 130 interrupted, 143 terminated (SIGTERM).")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a TOML configuration file (flags override its values)")
    parser.add_argument("--device", help="torch device for the models (default: cpu)")
    _threads(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors and failed gates")
    _debug(parser)


def _thread_count(text: str) -> int | str:
    if text == AUTO_THREADS:
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1 or {AUTO_THREADS!r}, got {text!r}")
    return count


def _threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_thread_count, metavar="N|auto",
                        help="CPU threads for torch (default: auto, the cores other work leaves free; results "
                             "do not depend on it)")


def _debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="on an internal error, print the traceback")


def _generator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", help="StyleGAN2 or StyleGAN3 checkpoint (NVlabs .pkl, rosinality .pt, TF .pkl) "
                                            "or zoo:dcgan")
    parser.add_argument("--generator-sha256", dest="generator_sha256", metavar="HEX",
                        help="refuse the checkpoint unless its sha256 is this (pin the file)")
    parser.add_argument("--generator-network", dest="generator_network", choices=("ema", "training"),
                        help="which generator of the checkpoint: ema (default: G_ema, Gs, g_ema) or training (G, g)")


def _classifier(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("classifier")
    group.add_argument("--classifier", help="TorchScript file, ONNX file (.onnx), package.module:callable, zoo:gender "
                                            "or zoo:age")
    group.add_argument("--labels", nargs="+", help="class (or head) labels, in output order")
    group.add_argument("--kind", choices=["softmax", "sigmoid", "heads"], help="output kind (default: softmax)")
    group.add_argument("--scores", choices=["logits", "probabilities"], help="what the model returns (default: logits)")
    group.add_argument("--layout", choices=["NCHW", "NHWC"],
                       help="an ONNX classifier's input layout, when its input shape cannot tell")


def _search(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--subspaces", help="a subspace folder written by `cfexplain learn`")
    parser.add_argument("--faces", type=_faces_value,
                        help=f"number of faces (default: explain {EXPLAIN_FACES}, audit {AuditSettings().n}); audit: "
                             "'auto' adds faces in rounds until every verdict is decided (at most --max-faces)")
    parser.add_argument("--seed", type=int, help=f"seed of the faces (default: {_DEFAULTS.seed})")
    parser.add_argument("--target", help="'flip' (default), a class index or label, or 'head,on|off|flip'")
    parser.add_argument("--out", help=f"output folder (default: {default_out})")
    _setting_flags(parser.add_argument_group("search settings"), SearchSettings)
    photos = parser.add_argument_group("photos (instead of generated faces)")
    photos.add_argument("--images", metavar="PATH", help="a photo, or a folder of photos: their faces are aligned to "
                                                         "the generator's framing, inverted, gated and explained")
    photos.add_argument("--multiple-faces", choices=["error", "largest", "all"],
                        help="a photo with several faces: stop with an error (default), take the largest, or all")
    photos.add_argument("--skip-unusable", action="store_true", default=None,
                        help="leave out photos without a usable face (listed) instead of stopping")
    photos.add_argument("--inversion-steps", type=int,
                        help=f"optimisation steps per photo (default: {INVERSION_STEPS})")


def _add_demo(commands: _Subcommands) -> None:
    """``cfexplain demo``: the offline audit of the zoo's models."""
    demo = commands.add_parser("demo", help="audit the zoo's classifiers with the zoo's generator (offline, CPU)",
                               description=run_demo.__doc__, epilog=_EPILOG)
    demo.add_argument("--out", default="cfexplain-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--faces", type=int, default=16, help="faces per audit (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the faces (default: %(default)s)")
    _threads(demo)
    demo.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _debug(demo)
    demo.set_defaults(run=run_demo)


def _add_photos(commands: _Subcommands) -> None:
    """``cfexplain photos``: the zoo's example photos, written to a folder."""
    photos = commands.add_parser("photos", help="write the example photos (real faces from pinned PyPI wheels) to a "
                                                 "folder, to try --images on", description=run_photos.__doc__,
                                 epilog=_EPILOG)
    photos.add_argument("--out", default="example-photos", help="output folder (default: %(default)s)")
    photos.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _debug(photos)
    photos.set_defaults(run=run_photos)


def _add_learn(commands: _Subcommands) -> None:
    """``cfexplain learn``: semantic subspaces of a generator."""
    learn = commands.add_parser("learn", help="learn semantic subspaces of a generator", description=run_learn.__doc__,
                                epilog=_EPILOG)
    _common(learn)
    _generator(learn)
    learn.add_argument("--stack", choices=["facemesh", "bisenet_fan"], help="analyzer stack (default: facemesh)")
    learn.add_argument("--parser", help="BiSeNet checkpoint (79999_iter.pth) for the bisenet_fan stack")
    learn.add_argument("--landmarks", help="FAN checkpoint (.pth.tar or TorchScript .zip) for the bisenet_fan stack")
    learn.add_argument("--space", help="latent space: s, w+, w or z (default: s where the generator has it, "
                                       "as StyleGAN2 and zoo:dcgan do, else z)")
    learn.add_argument("--semantics", nargs="+", help="which preset semantics (default: all the stack can express)")
    learn.add_argument("--samples", type=int,
                       help=f"faces the metrics are averaged over (default: {LEARNING_FACES})")
    learn.add_argument("--seed", type=int, help=f"seed of those faces (default: {LEARNING_SEED})")
    learn.add_argument("--resolution", type=int, help="stop synthesis early at this resolution")
    learn.add_argument("--method", choices=["auto", "forward", "reverse", "randomized"], help="Jacobian method")
    learn.add_argument("--checkpoint-dir", dest="checkpoint_dir", help="save progress there and resume")
    learn.add_argument("--out", help="output folder (default: subspaces)")
    learn.set_defaults(run=run_learn)


def _add_explain(commands: _Subcommands) -> None:
    """``cfexplain explain``: counterfactuals of faces in every subspace."""
    explain = commands.add_parser("explain", help="counterfactuals of faces in every subspace",
                                  description=run_explain.__doc__, epilog=_EPILOG)
    _common(explain)
    _generator(explain)
    _classifier(explain)
    _search(explain, "counterfactuals")
    explain.set_defaults(run=run_explain)


def _add_audit(commands: _Subcommands) -> None:
    """``cfexplain audit``: which semantics flip a classifier's decisions, with gates."""
    audit = commands.add_parser("audit", help="audit a classifier: which semantics flip its decisions",
                                description=run_audit.__doc__, epilog=_EPILOG)
    _common(audit)
    _generator(audit)
    _classifier(audit)
    _search(audit, "audit")
    stack = audit.add_argument_group("analyzers (for the side_effect column; default: what `cfexplain learn` used)")
    stack.add_argument("--stack", choices=["facemesh", "bisenet_fan"], help="analyzer stack the subspaces were learned with")
    stack.add_argument("--parser", help="BiSeNet checkpoint for the bisenet_fan stack")
    stack.add_argument("--landmarks", help="FAN checkpoint for the bisenet_fan stack")
    audit.add_argument("--include-unfaithful", action="store_true", default=None,
                       help="with --images: count photos whose decision changes on their reconstruction in the table too")
    audit.add_argument("--checkpoint-dir", dest="checkpoint_dir",
                       help="save each process's finished work there and resume from it (rerun the same command)")
    audit.add_argument("--fail-if", dest="fail_if", action="append", metavar="CONDITION",
                       help="exit 1 when the condition holds, e.g. 'evidence[face_colour]' (the audit finds evidence "
                            "that the classifier uses face colour) or 'flip_rate[hair_photometry] > 0.2' (repeatable)")
    _setting_flags(audit.add_argument_group("audit settings"), AuditSettings)
    audit.set_defaults(run=run_audit)


def _faces_value(text: str) -> int | str:
    """``--faces``: a number, or ``auto``."""
    if text == AUTO:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of faces or 'auto', got {text!r}") from None


def _setting_flags(group: argparse._ArgumentGroup, settings_class: type) -> None:
    """A flag for each field of a settings dataclass the command line offers, made from the field
    (its help, type, choices and default): a new setting is a new flag."""
    for field in cli_fields(settings_class):
        flag, meta, default = "--" + field.name.replace("_", "-"), field.metadata, field.default
        shown = f" (default: {'yes' if default else 'no'})" if isinstance(default, bool) else \
            f" (default: {default})" if default is not None else ""
        if meta["type"] is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                               help=meta["help"] + shown)
        else:
            group.add_argument(flag, dest=field.name, type=meta["type"], choices=meta["choices"], default=None,
                               help=meta["help"] + ("" if "default" in meta["help"] else shown))


def _add_report(commands: _Subcommands) -> None:
    """``cfexplain report``: report.html from a saved audit."""
    report = commands.add_parser("report", help="render report.html from a saved audit", description=run_report.__doc__,
                                 epilog=_EPILOG)
    _common(report)
    _generator(report)
    _classifier(report)
    report.add_argument("--audit", required=True, help="the audit folder (AUDIT_OUT/audit from `cfexplain audit`)")
    report.add_argument("--subspaces", required=True, help="the subspace folder the audit used")
    report.add_argument("--out", default="report", help="output folder (default: %(default)s)")
    report.set_defaults(run=run_report)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cfexplain`` command (every subcommand has ``--help``)."""
    parser = argparse.ArgumentParser(prog="cfexplain", epilog=_EPILOG,
                                     description="Counterfactual explanations of image classifiers in interpretable "
                                                 "StyleGAN2 subspaces.")
    parser.add_argument("--version", action="version", version=f"cfexplain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_photos, _add_learn, _add_explain, _add_audit, _add_report):
        add(commands)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, like Ctrl-C: the partial results are kept the same way."""


def _sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise :class:`Terminated` (in the main thread); returns how to undo it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminated(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    me = _speaker()
    restore_sigterm = _sigterm_as_interrupt()
    stop_messages = _library_messages(quiet=getattr(args, "quiet", False))
    restore_threads: Callable[[], None] = lambda: None  # noqa: E731 - until the count is set
    try:
        if launched_by_torchrun() and args.command not in DISTRIBUTED_COMMANDS:
            raise InputError(f"`cfexplain {args.command}` runs in one process; under torchrun, run "
                             f"{' or '.join(f'`cfexplain {c}`' for c in DISTRIBUTED_COMMANDS)}")
        restore_threads = _apply_threads(args)
        return args.run(args)
    except CfexplainError as exc:
        print(f"{me}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print(f"{me}: terminated (SIGTERM); finished work is kept where the notes above say", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{me}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a write that fails despite the checks up front: a full disk, a vanished folder
        print(f"{me}: error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a bug, not a verdict: never exit 1 (a held gate)
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{me}: internal error: {describe_exception(exc)} (exit {EXIT_INTERNAL}; "
              f"{'traceback above' if getattr(args, 'debug', False) else 'run with --debug for the traceback'}; "
              f"please report it)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        restore_threads()
        stop_messages()
        restore_sigterm()
        _leave_process_group()


def _apply_threads(args: argparse.Namespace) -> Callable[[], None]:
    """Set torch's thread count from ``--threads``, else the configuration's ``[runtime] threads``,
    else ``auto`` (under torchrun each process takes its share of the cores); returns what puts
    the previous count back (for ``main`` called from Python)."""
    import torch

    threads = getattr(args, "threads", None)
    if threads is None and getattr(args, "config", None):
        threads = load_config(args.config).get("runtime", {}).get("threads")
    if threads is None or threads == AUTO_THREADS:
        threads = max(1, auto_threads() // processes_on_this_machine())
    previous = torch.get_num_threads()
    set_threads(threads)
    return lambda: torch.set_num_threads(previous)


def _library_messages(quiet: bool) -> Callable[[], None]:
    """Show the library's INFO messages (what the zoo downloads and converts …) on standard error
    as ``cfexplain: …`` lines, warnings only with ``--quiet``; returns what stops it."""
    logger = logging.getLogger("cfexplain")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cfexplain: %(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def stop() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return stop


def _speaker() -> str:
    """Who an error line comes from: ``cfexplain``, and under torchrun the process's rank beside it
    for ranks other than 0 (each rank reports its own errors)."""
    rank = int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0
    return f"cfexplain (rank {rank})" if rank else "cfexplain"


def _leave_process_group() -> None:
    """Under torchrun, leave the process group the command joined (it cannot be left open)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
