"""Does the first-order model predict what an edit does to each analyzer? Zoo faces, random edits.

The Jacobian metrics that subspaces are learned from, and the JVPs of the specificity and
side-effect measurements, all model a criterion's change under an edit as ``J · edit``. This
script measures how faithful that model is at the sizes counterfactual edits have: for each
face and each random unit direction ``d`` of ``z``, and for edit sizes ``t``, the cosine between the
criterion's true change ``c(G(z + t d)) − c(G(z))`` and its first-order prediction
``J_c(G(z)) · J_G(z) · t d`` (1 = the local Jacobian says exactly where the measurement goes).

Criteria: FaceMesh's 468 landmarks, the iris model's 152 eye points, and, as the control, the
image's mean colour (smooth by construction). The landmarks are also predicted by the JVP averaged
over ``--copies`` noisy copies of the image (``--sigma``), a smoothed Jacobian. The iris model's
crops are placed by FaceMesh and held still under differentiation, so its true change is also
measured with the crops held where they were: the part of the gap the crops' motion explains.

Usage::

    python benchmarks/jacobian_faithfulness.py [--faces 4] [--directions 4] [--sizes 0.05 0.2 0.5 1.0]

Prints a table and writes ``benchmarks/results/jacobian-faithfulness.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch
from torch.func import jvp

RESULTS = Path(__file__).resolve().parent / "results"


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


def _smoothed_jvp(criterion: Callable, image: torch.Tensor, tangent: torch.Tensor, copies: int, sigma: float,
                  seed: int) -> torch.Tensor:
    """The JVP averaged over ``copies`` copies of ``image`` with Gaussian noise of ``sigma``."""
    noise = sigma * torch.randn((copies, *image.shape[1:]), generator=torch.Generator().manual_seed(seed))
    return jvp(criterion, (image + noise,), (tangent.expand(copies, *tangent.shape[1:]),))[1].mean(0, keepdim=True)


def measure(faces: int, directions: int, sizes: list[float], copies: int, sigma: float) -> list[dict]:
    """One row per edit size: the mean image RMS change and the mean cosine per criterion."""
    from cfexplain import zoo

    generator, facemesh, iris = zoo.dcgan_faces(), zoo.facemesh(), zoo.iris()
    criteria: dict[str, Callable] = {"facemesh landmarks": facemesh.landmarks, "iris eye points": iris.landmarks,
                                     "mean colour (control)": lambda images: images.mean(dim=(2, 3))}
    codes = generator.sample(faces, space="z", seed=0)
    units = torch.randn(directions, codes.shape[1], generator=torch.Generator().manual_seed(5))
    units = units / units.norm(dim=1, keepdim=True)

    def image(z: torch.Tensor) -> torch.Tensor:
        return generator.synthesize(z, space="z")

    rows = []
    for size in sizes:
        cosines: dict[str, list[float]] = {name: [] for name in [*criteria, "facemesh landmarks, smoothed",
                                                                 "iris eye points, crops held still"]}
        rms = []
        for i in range(faces):
            for unit in units:
                code, edit = codes[i:i + 1], size * unit[None]
                before, tangent = jvp(image, (code,), (edit,))
                after = image(code + edit)
                rms.append(float((after - before).square().mean().sqrt()))
                changes = {name: criterion(after) - criterion(before) for name, criterion in criteria.items()}
                for name, criterion in criteria.items():
                    cosines[name].append(_cosine(changes[name], jvp(criterion, (before,), (tangent,))[1]))
                smoothed = _smoothed_jvp(facemesh.landmarks, before, tangent, copies, sigma, seed=i)
                cosines["facemesh landmarks, smoothed"].append(_cosine(changes["facemesh landmarks"], smoothed))
                # the iris model's crops are placed by FaceMesh and held still under differentiation:
                # its true change with the crops held where they were, against the same prediction
                still = facemesh.landmarks(before)
                change = iris.landmarks(after, facemesh_points=still) - iris.landmarks(before, facemesh_points=still)
                cosines["iris eye points, crops held still"].append(
                    _cosine(change, jvp(iris.landmarks, (before,), (tangent,))[1]))
        rows.append({"size": size, "image_rms": sum(rms) / len(rms),
                     **{name: sum(values) / len(values) for name, values in cosines.items()}})
        print(f"edit size {size}: done", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--directions", type=int, default=4)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.05, 0.2, 0.5, 1.0])
    parser.add_argument("--copies", type=int, default=16, help="noisy copies of the smoothed JVP")
    parser.add_argument("--sigma", type=float, default=0.02, help="noise of the smoothed JVP (image units, [-1, 1])")
    args = parser.parse_args()
    if min(args.faces, args.directions, args.copies) < 1 or min(args.sizes) <= 0 or args.sigma < 0:
        parser.error("--faces, --directions and --copies must be ≥ 1, --sizes positive, --sigma ≥ 0")
    torch.manual_seed(0)
    rows = measure(args.faces, args.directions, args.sizes, args.copies, args.sigma)
    names = [key for key in rows[0] if key not in ("size", "image_rms")]
    print("\ncosine(true change, first-order prediction), mean over "
          f"{args.faces} faces × {args.directions} directions")
    print("| edit size (z) | image RMS change | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for row in rows:
        print(f"| {row['size']} | {row['image_rms']:.3f} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "jacobian-faithfulness.json"
    out.write_text(json.dumps({"machine": {"platform": platform.platform(), "python": platform.python_version()},
                               "settings": vars(args), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
