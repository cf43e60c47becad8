"""Counterfactual search: cfexplain's batched search against the reference per-image procedure.

Reference (ICE's counterfactual loop, written here): for one face and one subspace at a time, the
coefficients λ of ``u = u0 + Vλ`` start at zero and take 20 SGD steps (lr 1.0, momentum 0.9, weight
decay 1e-3) on the decision margin towards the target, batch size 1, no stopping rule; the face
counts as flipped if its decision is flipped after the last step.

cfexplain: :class:`~cfexplain.counterfactual.CounterfactualExplainer` over all faces × subspaces in
one batched search (Adam, per-item early stop at the margin, bisection to the minimal edit, edit
budget 3 standard deviations).

Both on the zoo DCGAN and the zoo gender classifier ("flip the decision"), the same faces and
subspaces (learned once here with the FaceMesh presets), timed in the same process one after the
other. Reported: counterfactuals per second, flip rate, median edit (latent L2; cfexplain also its
minimal edit), peak memory (separate processes).

A second part measures the planted-shortcut recovery rate over ``--shortcut-seeds`` seeds
(:func:`cfexplain.trust.planted_shortcut_check`: a CNN trained on zoo faces whose label secretly
depends on lip colour must get lip colour ranked first).

Usage::

    python benchmarks/counterfactuals.py [--faces 32] [--shortcut-seeds 20]

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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthesis import _peak, _reset_peak  # noqa: E402


def setup(subspace_dir: Path):
    from cfexplain import zoo
    from cfexplain.presets import facemesh_semantics
    from cfexplain.subspaces import SubspaceSet, learn_subspaces

    generator, classifier = zoo.dcgan_faces(), zoo.gender_classifier()
    if (subspace_dir / "subspaces.json").exists():
        subspaces = SubspaceSet.load(subspace_dir)
    else:
        semantics = facemesh_semantics(zoo.facemesh_parser(), zoo.facemesh())
        subspaces = learn_subspaces(generator, semantics, space="z", n_samples=8, batch_size=4, progress=False)
        subspaces.save(subspace_dir)
    return generator, classifier, subspaces


def reference_search(generator, classifier, subspaces, codes, steps: int = 20) -> dict:
    """ICE's loop: one face × one subspace at a time, fixed SGD steps, no stopping rule."""
    from cfexplain.counterfactual import decision_gap

    flips, edits = [], []
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
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "items": len(flips), "per_second": len(flips) / seconds, "flip_rate": float(np.mean(flips)),
            "median_edit": float(np.median(edits))}


def ours_search(generator, classifier, subspaces, codes) -> dict:
    from cfexplain.counterfactual import CounterfactualExplainer

    explainer = CounterfactualExplainer(generator, classifier, subspaces, progress=False)
    for name in subspaces:
        explainer.spread(name)  # the one-off spread estimate is not part of the search
    start = time.perf_counter()
    table = explainer.explain(codes).to_dataframe()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "items": len(table), "per_second": len(table) / seconds,
            "flip_rate": float(table["flipped"].mean()), "median_edit": float(table["end_edit"].median()),
            "median_min_edit": float(table["min_edit"].median()),
            "median_min_edit_latent": float(table["min_edit_latent"].median()),
            "mean_steps": float(table["steps"].mean())}


def worker(which: str, faces: int, folder: str) -> dict:
    generator, classifier, subspaces = setup(Path(folder))
    codes = generator.sample(faces, seed=123)
    before = _reset_peak(torch.device("cpu"))
    result = (reference_search if which == "reference" else ours_search)(generator, classifier, subspaces, codes)
    result["memory_mb"] = (_peak(torch.device("cpu")) - before) / 2**20
    return result


def shortcut_recovery(seeds: int, folder: Path) -> dict:
    from cfexplain import zoo
    from cfexplain.trust import planted_shortcut_check

    generator, _, subspaces = setup(folder)
    parser = zoo.facemesh_parser()
    runs = []
    for seed in range(seeds):
        start = time.perf_counter()
        result = planted_shortcut_check(generator, parser, subspaces, seed=seed, n=16)
        runs.append({"seed": seed, "rank": result["rank"], "ranking": result["ranking"],
                     "val_accuracy": result["val_accuracy"], "seconds": time.perf_counter() - start})
        print(f"  shortcut seed {seed}: lip colour ranked {result['rank']} ({', '.join(result['ranking'])}); "
              f"classifier accuracy {result['val_accuracy']:.2f}", flush=True)
    return {"seeds": seeds, "recovery_rate": float(np.mean([r["rank"] == 1 for r in runs])), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=32)
    parser.add_argument("--shortcut-seeds", type=int, default=20)
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
    for which in ("ours", "reference"):
        out = subprocess.run([sys.executable, __file__, "--worker", which, str(args.faces), str(folder)],
                             capture_output=True, text=True, check=True)
        results[which] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{which}: {results[which]}", flush=True)
    ours, ref = results["ours"], results["reference"]
    table = "\n".join([
        "| search | counterfactuals/s | flip rate | median edit (latent L2) | peak MB |",
        "|---|---|---|---|---|",
        f"| reference (20 SGD steps, per image) | {ref['per_second']:.2f} | {ref['flip_rate']:.2f} | {ref['median_edit']:.2f} (final) | {ref['memory_mb']:.0f} |",
        f"| cfexplain (batched, early stop) | {ours['per_second']:.2f} | {ours['flip_rate']:.2f} | "
        f"{ours['median_edit']:.2f} (final), {ours['median_min_edit_latent']:.2f} (minimal) | {ours['memory_mb']:.0f} |",
        f"\nthroughput ratio: {ours['per_second'] / ref['per_second']:.1f}×",
    ])
    print(table)
    shortcut = shortcut_recovery(args.shortcut_seeds, folder) if args.shortcut_seeds else None
    if shortcut:
        print(f"planted-shortcut recovery: {shortcut['recovery_rate']:.2f} over {shortcut['seeds']} seeds")
    (RESULTS / "counterfactuals.json").write_text(json.dumps({
        "meta": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                 "faces": args.faces}, "search": results, "table": table, "shortcut": shortcut}, indent=1))
    print(f"wrote {RESULTS / 'counterfactuals.json'}")


if __name__ == "__main__":
    main()
