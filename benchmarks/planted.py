"""Planted-shortcut suite: is the semantic a classifier secretly uses ranked first?

For each planted measurement (:data:`cfexplain.trust.PLANTED_MEASUREMENTS`: skin luminance, skin
hue, lip redness, eye openness, mouth opening, jaw width) and each seed, a ``ShortcutCNN`` is
trained on a third of a pool of ``--pool`` zoo faces (generated and measured once), labelled
"measurement above its median" and matched against the other five measurements so that the label
says nothing about them (:func:`cfexplain.trust.matched_sample`), then audited with the subspaces that ``cfexplain learn
--generator zoo:dcgan`` learns with its defaults (learned once here and cached under
``--subspaces``) and the audit's defaults. A seed counts as recovered when the measurement's
semantic is ranked first, alone.

The control beside each claim: the audit's own random-subspace columns, and the recovery a
random ranking would reach (1 in 6).

Usage::

    python benchmarks/planted.py [--seeds 10] [--faces 32] [--pool 8192] [--measurements skin_luminance ...]

Prints a table and writes ``benchmarks/results/planted.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def default_subspaces(folder: Path):
    """The subspaces ``cfexplain learn --generator zoo:dcgan`` learns with its defaults (cached)."""
    from cfexplain import zoo
    from cfexplain.presets import facemesh_semantics
    from cfexplain.subspaces import SubspaceSet, learn_subspaces

    if (folder / "subspaces.json").exists():
        return SubspaceSet.load(folder)
    generator = zoo.dcgan_faces()
    semantics = facemesh_semantics(zoo.facemesh_parser(), zoo.facemesh())
    subspaces = learn_subspaces(generator, semantics, space="s")
    subspaces.save(folder)
    return subspaces


def main() -> None:
    from cfexplain import zoo
    from cfexplain.trust import PLANTED_MEASUREMENTS, planted_suite

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--faces", type=int, default=32, help="faces per audit")
    parser.add_argument("--pool", type=int, default=8192, help="labelled faces the classifiers are drawn from")
    parser.add_argument("--measurements", nargs="+", default=list(PLANTED_MEASUREMENTS), choices=list(PLANTED_MEASUREMENTS))
    parser.add_argument("--subspaces", default=str(RESULTS / "planted-subspaces"), help="folder for the learned subspaces")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    start = time.perf_counter()
    subspaces = default_subspaces(Path(args.subspaces))
    print(subspaces.specificity_table().to_string(index=False), flush=True)
    runs = planted_suite(zoo.dcgan_faces(), zoo.facemesh_parser(), subspaces, measurements=args.measurements,
                         seeds=range(args.seeds), pool=args.pool, n=args.faces, joint=False, attribution=False)
    summary = runs.groupby("measurement", sort=False).agg(
        semantic=("semantic", "first"), seeds=("seed", "count"), recovery=("passed", "mean"),
        median_rank=("rank", "median"), val_accuracy=("val_accuracy", "mean"))
    table = summary.to_string(float_format=lambda v: f"{v:.2f}")
    print(runs.to_string(index=False))
    print(table)
    out = RESULTS / "planted.json"
    out.write_text(json.dumps({
        "meta": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                 "faces": args.faces, "pool": args.pool, "seconds": round(time.perf_counter() - start, 1),
                 "subspaces": {name: subspaces[name].dim for name in subspaces},
                 "specificity": subspaces.specificity_table().to_dict(orient="records")},
        "summary": json.loads(summary.reset_index().to_json(orient="records")),
        "runs": json.loads(runs.to_json(orient="records")), "table": table}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
