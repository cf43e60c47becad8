"""Planted-shortcut suite: does the audit claim the semantic a classifier secretly uses, and nothing else?

For each planted measurement (:data:`cfexplain.trust.PLANTED_MEASUREMENTS`: skin luminance, skin
hue, lip redness, eye brightness, eye openness, mouth opening, jaw width), each negative control
(:data:`cfexplain.trust.NEGATIVE_CONTROLS`: the brightness outside the face oval, a random label)
and each seed, a ``ShortcutCNN`` is trained on a third of a pool of ``--pool`` zoo faces (generated
and measured once), labelled "measurement above its median" and matched against the planted
measurements so that the label says nothing about them (:func:`cfexplain.trust.matched_sample`),
then audited with the subspaces that ``cfexplain learn --generator zoo:dcgan`` learns with its
defaults (learned once here and cached under ``--subspaces``) and the audit's defaults (its random
control, its statistics), without the joint search.

Each run ends as a *correct claim* (the planted semantic has evidence, no other does), a *false
claim* (another semantic has evidence, or any on a negative control), *no evidence* or *cannot
tell*. The audit's own control is beside every claim: its random subspaces, its exact test, its
α = 0.05 after Holm's correction.

Usage::

    python benchmarks/planted.py [--seeds 10] [--faces 32] [--pool 8192] [--measurements lip_redness ...]
                                 [--name planted]

Prints a table and writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pandas as pd
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


def pooled(generator, face_parser, size: int, file: Path):
    """The suite's pool of ``size`` faces with every measurement, made once and kept in ``file``."""
    from cfexplain.trust import NEGATIVE_CONTROLS, PLANTED_MEASUREMENTS, planted_dataset

    if file.exists():
        saved = torch.load(file, weights_only=True)
        if len(saved["images"]) == size:
            return saved["images"], saved["scores"]
    images, scores = planted_dataset(generator, face_parser, size, [*PLANTED_MEASUREMENTS, *NEGATIVE_CONTROLS],
                                     seed=12345)
    torch.save({"images": images, "scores": scores}, file)
    return images, scores


def outcome_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per measurement: its semantic, the runs, and how many ended in each outcome."""
    counts = runs.groupby("measurement", sort=False)["outcome"].value_counts().unstack(fill_value=0)
    for outcome in ("correct claim", "false claim", "no evidence", "cannot tell"):
        if outcome not in counts:
            counts[outcome] = 0
    first = runs.groupby("measurement", sort=False).agg(semantic=("semantic", lambda s: s.iloc[0] or "(none)"),
                                                         runs=("seed", "count"), val_accuracy=("val_accuracy", "mean"))
    return first.join(counts[["correct claim", "false claim", "no evidence", "cannot tell"]])


def main() -> None:
    from cfexplain import zoo
    from cfexplain.trust import NEGATIVE_CONTROLS, PLANTED_MEASUREMENTS, planted_suite

    everything = [*PLANTED_MEASUREMENTS, *NEGATIVE_CONTROLS]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--faces", type=int, default=32, help="faces per audit")
    parser.add_argument("--pool", type=int, default=8192, help="labelled faces the classifiers are drawn from")
    parser.add_argument("--measurements", nargs="+", default=everything, choices=everything)
    parser.add_argument("--subspaces", default=str(RESULTS / "planted-subspaces"), help="folder for the learned subspaces")
    parser.add_argument("--name", default="planted", help="results file name (benchmarks/results/NAME.json)")
    parser.add_argument("--pool-file", help="keep the generated, measured pool in this .pt file and reuse it "
                                            "(about 10 minutes to make)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    start = time.perf_counter()
    subspaces = default_subspaces(Path(args.subspaces))
    print(subspaces.specificity_table().to_string(index=False), flush=True)
    generator, face_parser = zoo.dcgan_faces(), zoo.facemesh_parser()
    data = pooled(generator, face_parser, args.pool, Path(args.pool_file)) if args.pool_file else None
    runs = planted_suite(generator, face_parser, subspaces, measurements=args.measurements, seeds=range(args.seeds),
                         pool=args.pool, n=args.faces, data=data, joint=False, attribution=False)
    summary = outcome_table(runs)
    table = summary.to_string(float_format=lambda v: f"{v:.2f}")
    print(runs.drop(columns=["ranking"]).to_string(index=False))
    print(table)
    out = RESULTS / f"{args.name}.json"
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
