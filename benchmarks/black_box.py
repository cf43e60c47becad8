"""Black-box audits against gradient audits: the same classifiers, faces and subspaces.

Each classifier is audited twice with the audit's defaults: once as the torch module it is (gradient
search, Integrated Gradients), once as a function of image arrays (``Classifier.from_function``:
float32 NCHW images in the generator's range in, probabilities out), searched from queries only
(finite-difference Newton steps, Shapley attribution). The classifiers: the zoo's gender net, the
zoo's age net grouped into under / over 30, and planted-shortcut classifiers of the colour
measurements (skin luminance, skin hue, lip redness; :mod:`cfexplain.trust`), each trained on a
matched sample of a pool of zoo faces. The subspaces are the ones ``benchmarks/planted.py`` learns
(``cfexplain learn --generator zoo:dcgan`` defaults), cached under ``--subspaces``.

Per classifier: the largest difference in flip rate over the semantics, the first-ranked semantic
and the verdicts of both, the rank agreement (semantics with the same rank), the median minimal
edits, the median and largest queries per counterfactual, and the wall time of both audits.
Targets (issue 30): flip rates within 0.05 and the same first-ranked semantic on every planted
colour case; at most 200 queries per counterfactual; the black-box audit within 3× the gradient
audit's wall time.

Usage::

    python benchmarks/black_box.py [--faces 32] [--pool 2048] [--seed 0] [--cases gender age lip_redness ...]

Prints a table and writes ``benchmarks/results/black_box.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from planted import RESULTS, default_subspaces

COLOUR_PLANTS = ("skin_luminance", "skin_hue", "lip_redness")


def as_function(classifier):
    """``classifier`` reached only through its probabilities: a function of float32 NCHW arrays."""
    from cfexplain import Classifier, OutputSpec, Preprocessing

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return classifier.probabilities(torch.from_numpy(images)).numpy()

    output = OutputSpec(classifier.kind, classifier.labels, "probabilities", threshold=classifier.output.threshold)
    return Classifier.from_function(predict, output=output, preprocessing=Preprocessing(value_range=(-1.0, 1.0)),
                                    layout="NCHW", dtype="float32", name=f"{classifier.name} (black box)")


def classifiers(cases, generator, face_parser, pool: int, seed: int):
    """(case, classifier) for each case: the zoo nets by name, the planted colour plants trained here."""
    from cfexplain import zoo
    from cfexplain.trust import PLANTED_MEASUREMENTS, planted_dataset, planted_shortcut_classifier

    plants = [case for case in cases if case in COLOUR_PLANTS]
    data = None
    if plants:
        data = planted_dataset(generator, face_parser, pool, list(PLANTED_MEASUREMENTS.values()), seed=12345)
    for case in cases:
        if case == "gender":
            yield case, zoo.gender_classifier()
        elif case == "age":
            ages = zoo.age_classifier()
            yield case, ages.grouped({"under 30": [a for a in ages.labels if float(a) < 30],
                                      "30 and over": [a for a in ages.labels if float(a) >= 30]})
        else:
            images, scores = data
            others = torch.stack([scores[o] for o in PLANTED_MEASUREMENTS if o != case], dim=1)
            classifier, _ = planted_shortcut_classifier(generator, face_parser, measurement=case, seed=seed,
                                                        data=(images, scores[case]), confounders=others,
                                                        n_train=min(4000, pool // 3))
            yield case, classifier


def compare(case: str, gradient, queried, seconds: tuple[float, float]) -> dict:
    """One row of the table: the two audits of one classifier side by side."""
    by_gradient, by_queries = (r.table.set_index("semantic") for r in (gradient, queried))
    names = list(by_gradient.index)
    by_queries = by_queries.loc[names]
    queries = queried.counterfactuals.table["queries"]
    return {
        "case": case,
        "flip_rate_gradient": by_gradient["flip_rate"].round(3).tolist(),
        "flip_rate_black_box": by_queries["flip_rate"].round(3).tolist(),
        "max_flip_rate_difference": float((by_gradient["flip_rate"] - by_queries["flip_rate"]).abs().max()),
        "first_gradient": gradient.ranking()[0], "first_black_box": queried.ranking()[0],
        "same_first": gradient.ranking()[0] == queried.ranking()[0],
        "evidence_gradient": ", ".join(gradient.evidence), "evidence_black_box": ", ".join(queried.evidence),
        "rank_agreement": float((by_gradient["rank"] == by_queries["rank"]).mean()),
        "median_min_edit_gradient": float(by_gradient["median_min_edit"].median()),
        "median_min_edit_black_box": float(by_queries["median_min_edit"].median()),
        "median_queries": float(queries.median()), "max_queries": int(queries.max()),
        "joint_queries_per_face": float((queried.joint["queries"] + queried.joint["attribution_queries"]).median()),
        "seconds_gradient": round(seconds[0], 1), "seconds_black_box": round(seconds[1], 1),
        "time_ratio": round(seconds[1] / seconds[0], 2),
    }


def main() -> None:
    from cfexplain import zoo
    from cfexplain.audit import audit
    from cfexplain.presets import facemesh_semantics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=32, help="faces per audit (the audit's default)")
    parser.add_argument("--pool", type=int, default=2048, help="labelled faces the planted classifiers are drawn from")
    parser.add_argument("--seed", type=int, default=0, help="seed of the planted classifiers (faces: seed + 1000)")
    parser.add_argument("--cases", nargs="+", default=["gender", "age", *COLOUR_PLANTS],
                        choices=["gender", "age", *COLOUR_PLANTS])
    parser.add_argument("--subspaces", default=str(RESULTS / "planted-subspaces"), help="folder for the learned subspaces")
    parser.add_argument("--name", default="black_box", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    subspaces = default_subspaces(Path(args.subspaces))
    generator, face_parser = zoo.dcgan_faces(), zoo.facemesh_parser()
    semantics = facemesh_semantics(face_parser, zoo.facemesh())
    options = dict(seed=args.seed + 1000, semantics=semantics, progress=False)
    rows = []
    for case, classifier in classifiers(args.cases, generator, face_parser, args.pool, args.seed):
        start = time.perf_counter()
        gradient = audit(generator, classifier, subspaces, args.faces, **options)
        middle = time.perf_counter()
        queried = audit(generator, as_function(classifier), subspaces, args.faces, **options)
        end = time.perf_counter()
        rows.append(compare(case, gradient, queried, (middle - start, end - middle)))
        print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    shown = table[["case", "max_flip_rate_difference", "first_gradient", "first_black_box", "rank_agreement",
                   "median_min_edit_gradient", "median_min_edit_black_box", "median_queries", "max_queries",
                   "joint_queries_per_face", "seconds_gradient", "seconds_black_box", "time_ratio"]]
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.3g}")
    print(text)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps({
        "meta": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                 "faces": args.faces, "pool": args.pool, "seed": args.seed,
                 "subspaces": {name: subspaces[name].dim for name in subspaces}},
        "rows": rows, "table": text}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
