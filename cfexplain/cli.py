"""The ``cfexplain`` command line."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import CfexplainError

__all__ = ["main"]

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def _demo(args: argparse.Namespace) -> int:
    """Generate faces with the zoo's DCGAN, classify them and parse their regions."""
    import torch

    from . import zoo
    from .imaging import image_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _say("loading the offline models (fetched and converted once, then cached)…", args.quiet)
    generator = zoo.dcgan_faces()
    gender, age = zoo.gender_classifier(), zoo.age_classifier()
    parser = zoo.facemesh_parser()
    _say(f"generating {args.n} faces (seed {args.seed})…", args.quiet)
    with torch.no_grad():
        images = generator.synthesize(generator.sample(args.n, seed=args.seed))
        p_gender = gender.probabilities(images)
        ages = torch.tensor(zoo.AGE_BINS, dtype=images.dtype)
        expected_age = (age.probabilities(images) * ages).sum(dim=1)
        parsing = parser.parse(images)
    palette = torch.tensor([[0, 0, 0], [230, 180, 150], [120, 0, 0], [255, 0, 0], [255, 110, 110], [0, 220, 0],
                            [0, 160, 0], [40, 40, 255], [0, 0, 170], [255, 230, 0]], dtype=images.dtype) / 127.5 - 1
    overlay = 0.5 * images + 0.5 * palette[parsing.labels()].permute(0, 3, 1, 2)
    image_grid(images).save(out / "faces.png")
    image_grid(overlay).save(out / "regions.png")
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["face", "p_female", "p_male", "expected_age", "lips_area", "eyes_area"])
        lips, eyes = parsing.mask("lips", soft=False).mean(dim=(1, 2, 3)), parsing.mask("eyes", soft=False).mean(dim=(1, 2, 3))
        for i in range(args.n):
            writer.writerow([i, f"{p_gender[i, 0]:.4f}", f"{p_gender[i, 1]:.4f}", f"{expected_age[i]:.1f}",
                             f"{lips[i]:.4f}", f"{eyes[i]:.4f}"])
    male = int((p_gender[:, 1] > 0.5).sum())
    _say(f"classified: {male} male, {args.n - male} female; expected age {expected_age.mean():.1f} on average", args.quiet)
    _say(f"wrote {out / 'faces.png'}, {out / 'regions.png'}, {out / 'predictions.csv'}", args.quiet)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cfexplain`` command."""
    parser = argparse.ArgumentParser(prog="cfexplain", description="Counterfactual explanations of image classifiers.")
    parser.add_argument("--version", action="version", version=f"cfexplain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo on the offline default models (CPU, no model hub)")
    demo.add_argument("--out", default="cfexplain-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--n", type=int, default=16, help="number of faces (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="print nothing")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 gate failed, 2 bad usage or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CfexplainError as exc:
        print(f"cfexplain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
