"""The ``cfexplain`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import CfexplainError

__all__ = ["main"]

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2


def _demo(args: argparse.Namespace) -> int:
    import torch

    from .generators import StyleGAN2Config, StyleGAN2Generator, load_generator
    from .imaging import image_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        generator = load_generator(args.checkpoint)
        source = f"checkpoint {args.checkpoint} ({generator.provenance['format']})"
    else:
        config = StyleGAN2Config.from_channel_base(64, channel_base=2048, channel_max=64, z_dim=64, w_dim=64)
        generator = StyleGAN2Generator(config, seed=args.seed)
        source = "a random-weight StyleGAN2 (64², no checkpoint given)"
    with torch.no_grad():
        ws = generator.sample(args.n, space="w+", seed=args.seed)
        full = generator.synthesize(ws)
        early = generator.synthesize(ws, resolution=min(32, generator.resolution))
    image_grid(full).save(out / "samples.png")
    image_grid(early).save(out / "samples_early_exit.png")
    (out / "style_layout.json").write_text(json.dumps(generator.style_layout.to_records(), indent=1))
    print(f"cfexplain {__version__}: synthesized {args.n} images from {source}")
    print(f"wrote {out / 'samples.png'}, {out / 'samples_early_exit.png'}, {out / 'style_layout.json'}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cfexplain`` command."""
    parser = argparse.ArgumentParser(prog="cfexplain", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cfexplain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end demo offline on the CPU")
    demo.add_argument("--out", default="cfexplain-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--checkpoint", help="a StyleGAN2 checkpoint to use instead of the default")
    demo.add_argument("--n", type=int, default=8, help="number of faces (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
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
