"""Direction discovery on the zoo DCGAN: reconstructor classification accuracy (RCA).

Voynov & Babenko measure how distinguishable a set of directions is by training a fresh
reconstructor to tell them apart and reporting its accuracy. This script trains K directions with
the Voynov–Babenko objective on the zoo's DCGAN (z ∈ R¹⁰⁰, 64² faces), then trains one fresh
reconstructor each for the learned, random orthonormal and coordinate directions (same settings,
same steps) and reports their accuracy on fresh batches, plus GANSpace directions for reference.
The paper's ordering is learned > random and learned > coordinate.

Usage::

    python benchmarks/discovery.py [--directions 32] [--steps 3000] [--rca-steps 1500] [--width 32] [--size 64]

Prints a table and writes ``benchmarks/results/discovery.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--directions", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rca-steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of reconstructor and deformator")
    parser.add_argument("--width", type=int, default=32, help="reconstructor base width")
    parser.add_argument("--size", type=int, default=64, help="reconstructor input size (images are resized to it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from cfexplain import zoo
    from cfexplain.discovery import (
        VoynovDiscovery,
        coordinate_directions,
        ganspace_directions,
        random_directions,
        reconstructor_accuracy,
    )

    generator = zoo.dcgan_faces()
    k, dim = args.directions, generator.latent_dim("z")
    common = dict(batch_size=args.batch_size, reconstructor_lr=args.lr, reconstructor_width=args.width,
                  reconstructor_size=args.size, seed=args.seed)
    start = time.perf_counter()
    discovery = VoynovDiscovery(k, deformator_lr=args.lr, steps=args.steps, **common).fit(generator)
    train_seconds = time.perf_counter() - start
    print(f"trained {k} directions in {train_seconds:.0f} s; reconstructor accuracy during training "
          f"{discovery.accuracy_:.3f}", flush=True)
    ganspace, _, _ = ganspace_directions(generator, k, n_samples=20_000, seed=args.seed)
    candidates = {
        "learned (Voynov–Babenko)": discovery.directions_,
        "random orthonormal": random_directions(dim, k, seed=args.seed + 1),
        "coordinate axes": coordinate_directions(dim, k),
        "GANSpace (PCA of the first layer)": torch.from_numpy(ganspace).float(),
    }
    rows = []
    for name, directions in candidates.items():
        result = reconstructor_accuracy(generator, directions, steps=args.rca_steps, **common)
        rows.append({"directions": name, **result})
        print(f"{name:36s} RCA {result['accuracy']:.3f} ({result['seconds']:.0f} s)", flush=True)
    table = ["| directions | RCA (fresh reconstructor) |", "|---|---|"]
    table += [f"| {r['directions']} | {r['accuracy']:.3f} |" for r in rows]
    text = "\n".join(table)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "discovery.json"
    out.write_text(json.dumps({"meta": {"torch": torch.__version__, "python": platform.python_version(),
                                        "threads": torch.get_num_threads(), **vars(args)},
                               "train_seconds": train_seconds, "train_accuracy": discovery.accuracy_,
                               "final_loss": sum(discovery.history_["loss"][-100:]) / 100, "rows": rows,
                               "table": text}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
