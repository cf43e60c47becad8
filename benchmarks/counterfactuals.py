"""Counterfactual search: cfexplain's batched search against the reference per-image procedure.

Reference (ICE's counterfactual loop, written here): for one face and one subspace at a time, the
coefficients λ of ``u = u0 + Vλ`` start at zero and take 20 SGD steps (lr 1.0, momentum 0.9, weight
decay 1e-3) on the decision margin towards the target, batch size 1, no stopping rule; the face
counts as flipped if its decision is flipped after the last step.

cfexplain: :class:`~cfexplain.counterfactual.CounterfactualExplainer` over all faces × subspaces in
one batched search (its defaults: Newton steps inside each subspace, each item stopping once its
decision crosses, a regula-falsi root search for the minimal edit, edit budget 3 standard
deviations; once more with a 30σ budget, about the reference's edit sizes).

Both on the zoo DCGAN and the zoo gender classifier ("flip the decision"), the same faces and
subspaces (learned once here with the FaceMesh presets), timed in the same process one after the
other. Reported: counterfactuals per second, flip rate, median edit (latent L2; cfexplain also its
minimal edit), peak memory (separate processes).

Whether the audit's answers are right on planted classifiers is ``benchmarks/planted.py``'s
question.

Usage::

    python benchmarks/counterfactuals.py [--faces 32]

Prints tables and writes ``benchmarks/results/counterfactuals.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET = 3.0  # cfexplain's default edit budget, in standard deviations
WIDE_BUDGET = 30.0  # about the reference's edits, which have no bound
sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthesis import _peak, _reset_peak


def setup(subspace_dir: Path):
    from cfexplain import zoo
    from cfexplain.presets import facemesh_semantics
    from cfexplain.subspaces import SubspaceSet, learn_subspaces

    generator, classifier = zoo.dcgan_faces(), zoo.gender_classifier()
    if (subspace_dir / "subspaces.json").exists():
        subspaces = SubspaceSet.load(subspace_dir)
    else:
        semantics = facemesh_semantics(zoo.facemesh_parser(), zoo.facemesh())
        subspaces = learn_subspaces(generator, semantics, space="z", n_samples=8, batch_size=4, progress=False,
                                    specificity_samples=0)
        subspaces.save(subspace_dir)
    return generator, classifier, subspaces


def reference_search(generator, classifier, subspaces, codes, steps: int = 20) -> dict:
    """ICE's loop: one face × one subspace at a time, fixed SGD steps, no stopping rule."""
    from cfexplain.counterfactual import decision_gap, latent_spread

    spreads = {name: latent_spread(generator, subspaces[name]) for name in subspaces}
    flips, edits, std_edits = [], [], []
    start = time.perf_counter()
    for face in range(codes.shape[0]):
        u0 = codes[face:face + 1]
        with torch.no_grad():
            original = classifier.logits(generator.synthesize(u0)).argmax(dim=1)
        mode, index = torch.tensor([1]), original  # "away from the original class"
        for name in subspaces:
            basis = subspaces[name].basis.to(u0.dtype)
            coefficients = torch.zeros(1, basis.shape[1], requires_grad=True)
            optimizer = torch.optim.SGD([coefficients], lr=1.0, momentum=0.9, weight_decay=1e-3)
            for _ in range(steps):
                logits = classifier.logits(generator.synthesize(u0 + coefficients @ basis.T))
                loss = -decision_gap(logits, mode, index, 0.0).sum()  # the margin logit_other − logit_original, maximised
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                final = classifier.logits(generator.synthesize(u0 + coefficients @ basis.T)).argmax(dim=1)
            flips.append(bool(final != original))
            edits.append(float(coefficients.detach().norm()))
            std_edits.append(float((coefficients.detach()[0] / spreads[name]).norm()))
    seconds = time.perf_counter() - start
    within = [f and e <= BUDGET for f, e in zip(flips, std_edits)]
    passes = len(flips) * (2 + steps)  # forward of the original and the end, one forward+backward per step
    return {"seconds": seconds, "items": len(flips), "per_second": len(flips) / seconds, "flip_rate": float(np.mean(flips)),
            "flip_rate_within_budget": float(np.mean(within)), "median_edit": float(np.median(edits)),
            "median_edit_std": float(np.median(std_edits)), "forward_rows": passes, "backward_rows": len(flips) * steps}


def ours_search(generator, classifier, subspaces, codes, budget: float = BUDGET) -> dict:
    from cfexplain.counterfactual import CounterfactualExplainer

    explainer = CounterfactualExplainer(generator, classifier, subspaces, unit="latent", budget=budget, progress=False)
    explainer.prepare()  # the one-off spread estimate is not part of the search
    rows = {"forward": 0, "backward": 0}
    logits = classifier.logits

    def counted(images):  # every pass of the search ends in the classifier
        rows["forward"] += images.shape[0]
        rows["backward"] += images.shape[0] if images.requires_grad and torch.is_grad_enabled() else 0
        return logits(images)

    classifier.logits = counted
    start = time.perf_counter()
    table = explainer.explain(codes).to_dataframe()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "items": len(table), "per_second": len(table) / seconds, "budget": budget,
            "flip_rate": float(table["flipped"].mean()), "median_edit": float(table["end_edit"].median()),
            "median_min_edit": float(table["min_edit"].median()),
            "median_min_edit_latent": float(table["min_edit_latent"].median()),
            "mean_steps": float(table["steps"].mean()), "forward_rows": rows["forward"],
            "backward_rows": rows["backward"]}


def worker(which: str, faces: int, folder: str) -> dict:
    generator, classifier, subspaces = setup(Path(folder))
    codes = generator.sample(faces, seed=123)
    before = _reset_peak(torch.device("cpu"))
    if which == "reference":
        result = reference_search(generator, classifier, subspaces, codes)
    else:
        result = ours_search(generator, classifier, subspaces, codes, BUDGET if which == "ours" else WIDE_BUDGET)
    result["memory_mb"] = (_peak(torch.device("cpu")) - before) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=32)
    parser.add_argument("--subspaces", default=str(RESULTS / "zoo-subspaces"), help="folder for the learned subspaces")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        which, faces, folder = args.worker
        print(json.dumps(worker(which, int(faces), folder)))
        return
    RESULTS.mkdir(exist_ok=True)
    folder = Path(args.subspaces)
    setup(folder)  # learn once, before timing
    results = {}
    for which in ("ours", "ours-wide", "reference"):
        out = subprocess.run([sys.executable, __file__, "--worker", which, str(args.faces), str(folder)],
                             capture_output=True, text=True, check=True)
        results[which] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{which}: {results[which]}", flush=True)
    table = search_table(results)
    print(table)
    out = RESULTS / "counterfactuals.json"
    out.write_text(json.dumps({
        "meta": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                 "faces": args.faces}, "search": results, "table": table}, indent=1))
    print(f"wrote {out}")


def search_table(results: dict) -> str:
    ours, wide, ref = results["ours"], results["ours-wide"], results["reference"]

    def per_item(r):
        return f"{r['forward_rows'] / r['items']:.1f} / {r['backward_rows'] / r['items']:.1f}"

    return "\n".join([
        "| search | counterfactuals/s | flip rate | median edit | passes per item (fwd / bwd) | peak MB |",
        "|---|---|---|---|---|---|",
        f"| reference (20 SGD steps, per image, no bound) | {ref['per_second']:.2f} | {ref['flip_rate']:.2f} "
        f"({ref['flip_rate_within_budget']:.2f} within {BUDGET:g}σ) | {ref['median_edit_std']:.1f}σ (end) | {per_item(ref)} | "
        f"{ref['memory_mb']:.0f} |",
        f"| cfexplain, budget {BUDGET:g}σ | {ours['per_second']:.2f} | {ours['flip_rate']:.2f} | "
        f"{ours['median_min_edit']:.2f}σ (minimal), {ours['median_edit']:.2f}σ (end) | {per_item(ours)} | {ours['memory_mb']:.0f} |",
        f"| cfexplain, budget {WIDE_BUDGET:g}σ | {wide['per_second']:.2f} | {wide['flip_rate']:.2f} | "
        f"{wide['median_min_edit']:.2f}σ (minimal), {wide['median_edit']:.2f}σ (end) | {per_item(wide)} | {wide['memory_mb']:.0f} |",
        f"\nthroughput ratio: {ours['per_second'] / ref['per_second']:.1f}× (budget {BUDGET:g}σ), "
        f"{wide['per_second'] / ref['per_second']:.1f}× (budget {WIDE_BUDGET:g}σ)",
    ])


if __name__ == "__main__":
    main()
