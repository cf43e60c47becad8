"""Subspace learning: cfexplain's Jacobian engine against ICE's procedure, side by side.

ICE's procedure (written here as the baseline): for each criterion, one forward pass with the
graph retained, then one reverse pass (``torch.autograd.grad`` with a one-hot cotangent) per
criterion output, the batch of samples riding along; ``M = Σ JᵀJ`` from the rows. cfexplain:
``learn_subspaces(method="auto")``.

Reported per case: generator passes (one image through the generator, forward, JVP or VJP of
one vector), wall time, peak memory (each part runs in a fresh process), and the agreement of every learned subspace with the exact
dense solution (mean cos² of principal angles; the exact solution is computed with dense
forward/reverse mode, which gives exactly ICE's ``JᵀJ``).

Running the baseline to the end takes hours on a CPU (tens of thousands of reverse passes), so by
default it runs ``--baseline-rows`` reverse passes of every criterion, checks them against the
exact Jacobian rows, and extrapolates its time by the exact number of outputs; the table says so.
``--baseline-rows 0`` runs it completely.

Cases:

* ``zoo``: the zoo DCGAN (z, D = 100) with the FaceMesh presets (six semantics);
* ``stylegan2-w`` / ``stylegan2-s``: a random-weight config-f StyleGAN2 at 256² in W (D = 512) or
  StyleSpace (D = 8704), with criteria shaped like the BiSeNet + FAN recipes: a random-weight
  BiSeNet parser for the masks and landmarks from a random-weight FAN (one hourglass), at the
  reference's working resolutions (random weights suffice for cost);
* ``stylegan3-w``: a random-weight StyleGAN3 T of the golden fixtures' shape (32², W of D = 32)
  with the same criteria (the parser and landmarks read the image up-sampled to their sizes).

A second part, ``--specificity``, measures how specific the zoo's subspaces are against random
directions (:func:`cfexplain.subspaces.measure_specificity`, 16 faces apart from the learning
ones, 64 random directions) for each design that was tried: the ICE null-space solver in ``z``
(the earlier default), the contrast solver in ``z``, and the contrast solver in the channel-style
space ``s`` (the default), each learned from ``--specificity-samples`` faces.

Usage::

    python benchmarks/subspaces.py [--cases zoo stylegan2-w stylegan2-s stylegan3-w] [--samples 4 1 1 4] [--baseline-rows 8]
    python benchmarks/subspaces.py --specificity [--specificity-samples 16]

Prints a table and writes ``benchmarks/results/subspaces.json`` (``subspaces-specificity.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
DENSE = ("forward", "reverse")  # the engine's exact modes
sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthesis import _peak, _reset_peak  # noqa: E402  (same memory measurement as the synthesis benchmark)


def build_case(name: str):
    """(generator, semantics, space, resolution) of a benchmark case."""
    from cfexplain import zoo
    from cfexplain.presets import bisenet_fan_semantics, facemesh_semantics

    if name == "zoo":
        generator = zoo.dcgan_faces()
        return generator, facemesh_semantics(zoo.facemesh_parser(), zoo.facemesh()), "z", None
    from cfexplain.analyzers import FAN, BiSeNet, BiSeNetParser, FANLandmarks
    from cfexplain.generators import StyleGAN2Config, StyleGAN2Generator, StyleGAN3Config, StyleGAN3Generator

    if name.startswith("stylegan3"):
        config = StyleGAN3Config(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024, channel_max=64)
        generator = StyleGAN3Generator(config, seed=0).requires_grad_(False)
    else:
        generator = StyleGAN2Generator(StyleGAN2Config.config_f(256), seed=0).requires_grad_(False)
    torch.manual_seed(0)
    parser = BiSeNetParser(BiSeNet(), input_size=256)
    landmarks = FANLandmarks(FAN(num_modules=1))
    semantics = bisenet_fan_semantics(parser, landmarks)
    return generator, semantics, name.split("-")[1], None


def unique_criteria(semantics):
    seen, criteria = set(), []
    for semantic in semantics:
        for criterion in semantic.criteria:
            if id(criterion) not in seen:
                seen.add(id(criterion))
                criteria.append(criterion)
    return criteria


def ice_baseline(generator, criteria, latents, space, rows: int, exact_factors) -> dict:
    """ICE's Jacobian loop (one reverse pass per output), possibly on the first ``rows`` outputs
    of each criterion; time extrapolated to all outputs in that case."""
    from cfexplain.jacobian import LatentImages

    images_of = LatentImages(generator, space)
    u = torch.nn.Parameter(latents.reshape(latents.shape[0], -1).clone())
    n = u.shape[0]
    seconds, passes, max_error = 0.0, 0, None
    for criterion, factor in zip(criteria, exact_factors):
        start = time.perf_counter()
        images = images_of(u)
        with torch.no_grad():
            context = criterion.prepare(images.detach())
        outputs = criterion.outputs(images, context)
        forward_time = time.perf_counter() - start
        m = outputs.shape[1]
        limit = m if rows <= 0 else min(rows, m)
        jacobian = torch.zeros(n, limit, u.shape[1], dtype=torch.float64)
        times = []
        for j in range(limit):
            one_hot = torch.zeros_like(outputs)
            one_hot[:, j] = 1.0
            t = time.perf_counter()
            (grad,) = torch.autograd.grad(outputs, u, grad_outputs=one_hot, retain_graph=True)
            times.append(time.perf_counter() - t)
            jacobian[:, j] = grad.double()
        seconds += forward_time + (sum(times) if limit == m else statistics.median(times) * m)
        passes += n * (1 + m)
        if limit == m and factor is not None:  # the complete baseline must give the exact metric
            exact = factor.T @ factor
            measured = np.einsum("nmd,nme->de", jacobian.numpy(), jacobian.numpy()) / n
            error = float(np.abs(measured - exact).max() / max(np.abs(exact).max(), 1e-30))
            max_error = error if max_error is None else max(max_error, error)
    return {"seconds": seconds, "passes": passes, "extrapolated": rows > 0, "max_relative_error": max_error}


def worker(part: str, name: str, samples: int, baseline_rows: int, folder: str) -> dict:
    """One measured part in its own process (so that its peak memory is its own)."""
    from cfexplain.jacobian import estimate_metrics
    from cfexplain.subspaces import learn_subspaces

    generator, semantics, space, resolution = build_case(name)
    criteria = unique_criteria(semantics)
    latents = generator.sample(samples, space=space, seed=0)
    dim = generator.latent_dim(space)
    before = _reset_peak(torch.device("cpu"))
    start = time.perf_counter()
    if part == "ours":
        learned = learn_subspaces(generator, semantics, space=space, n_samples=samples, batch_size=samples, seed=0,
                                  method="auto", resolution=resolution, progress=False)
        seconds = time.perf_counter() - start
        learned.save(Path(folder) / "ours")
        result = {"seconds": seconds, "passes": sum(learned.provenance["generator_passes"].values()),
                  "passes_by_kind": learned.provenance["generator_passes"], "criteria": learned.provenance["criteria"]}
    elif part == "exact":
        exact = estimate_metrics(generator, criteria, latents, space=space, method="forward" if dim <= 1024 else "reverse",
                                 resolution=resolution, batch_size=samples, progress=False)
        np.savez(Path(folder) / "exact.npz", *exact.factors)
        result = {"seconds": time.perf_counter() - start, "passes": exact.total_passes, "outputs": exact.output_sizes}
    else:
        exact_factors = list(np.load(Path(folder) / "exact.npz").values()) if (Path(folder) / "exact.npz").exists() else [None] * len(criteria)
        result = ice_baseline(generator, criteria, latents, space, baseline_rows, exact_factors)
    result["memory_mb"] = (_peak(torch.device("cpu")) - before) / 2**20
    return result


def _run_worker(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *map(str, args)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(name: str, samples: int, baseline_rows: int) -> dict:
    from cfexplain.subspaces import SOLVERS, SubspaceSet, subspace_agreement

    generator, semantics, space, _ = build_case(name)
    criteria = unique_criteria(semantics)
    dim = generator.latent_dim(space)
    print(f"[{name}] D = {dim}, {len(semantics)} semantics, {len(criteria)} distinct criteria, {samples} samples", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        ours = _run_worker("ours", name, samples, baseline_rows, folder)
        print(f"[{name}] cfexplain auto: {ours['seconds']:.1f} s, {ours['passes']} passes", flush=True)
        dense = all(c["method"] in DENSE for c in ours["criteria"])
        if dense:  # auto chose exact modes only: its metrics are the exact solution, no second run
            exact = {"outputs": [c["outputs"] for c in ours["criteria"]], "seconds": None, "same_as_ours": True}
            print(f"[{name}] cfexplain used dense (exact) modes only: it is the exact solution", flush=True)
        else:
            exact = _run_worker("exact", name, samples, baseline_rows, folder)
            print(f"[{name}] exact dense solution: {exact['seconds']:.1f} s", flush=True)
        baseline = _run_worker("baseline", name, samples, baseline_rows, folder)
        print(f"[{name}] ICE baseline: {baseline['seconds']:.1f} s{' (extrapolated)' if baseline['extrapolated'] else ''}, "
              f"{baseline['passes']} passes", flush=True)
        learned = SubspaceSet.load(Path(folder) / "ours")
        factors = None if dense else list(np.load(Path(folder) / "exact.npz").values())
    if dense:
        agreement = {semantic.name: 1.0 for semantic in semantics}
    else:
        factor_of = {id(c): f for c, f in zip(criteria, factors)}
        agreement = {}
        for semantic in semantics:
            result = SOLVERS[semantic.solver](factor_of[id(semantic.target)], [factor_of[id(c)] for c in semantic.keep],
                                              target_ratio=semantic.target_ratio, keep_ratios=semantic.keep_ratios)
            agreement[semantic.name] = subspace_agreement(learned[semantic.name].basis, result.basis)
    print(f"[{name}] agreement with the exact solution: {agreement}", flush=True)
    return {"case": name, "space": space, "dim": dim, "samples": samples, "semantics": [s.name for s in semantics],
            "outputs": dict(zip([c.name for c in criteria], exact["outputs"])), "ours": ours, "exact": exact,
            "baseline": baseline, "agreement": agreement, "agreement_exact_by_construction": dense,
            "dims": {s: learned[s].dim for s in learned}}


def table(rows: list[dict]) -> str:
    lines = ["| case | D | samples | ICE passes | cfexplain passes | passes ratio | ICE time (s) | cfexplain time (s) | "
             "time ratio | ICE MB | cfexplain MB | min agreement (mean cos²) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, o = r["baseline"], r["ours"]
        lines.append(f"| {r['case']} | {r['dim']} | {r['samples']} | {b['passes']:,} | {o['passes']:,} | "
                     f"{b['passes'] / o['passes']:.0f}× | {b['seconds']:.0f}{'*' if b['extrapolated'] else ''} | "
                     f"{o['seconds']:.0f} | {b['seconds'] / o['seconds']:.0f}× | {b['memory_mb']:.0f} | {o['memory_mb']:.0f} | "
                     f"{min(r['agreement'].values()):.4f}{'†' if r.get('agreement_exact_by_construction') else ''} |")
    lines.append("\n\\* ICE's time extrapolated from its first reverse passes per criterion (each costs the same).")
    lines.append("† auto chose dense forward/reverse modes only, which compute exactly ICE's JᵀJ.")
    return "\n".join(lines)


SPECIFICITY_DESIGNS = {  # name → (space, preset options)
    "z, ICE null-space solver (earlier default)": ("z", {"solver": "projected", "target_ratio": 0.1, "directions": None}),
    "z, contrast solver, 8 directions": ("z", {}),
    "s (channel styles), contrast solver, 8 directions (default)": ("s", {}),
}


def specificity_comparison(samples: int) -> tuple[list[dict], str]:
    """Specificity of every FaceMesh preset semantic for each design, on the zoo DCGAN."""
    from cfexplain import zoo
    from cfexplain.presets import facemesh_semantics
    from cfexplain.subspaces import learn_subspaces, measure_specificity

    generator, parser, landmarks = zoo.dcgan_faces(), zoo.facemesh_parser(), zoo.facemesh()
    rows = []
    for design, (space, options) in SPECIFICITY_DESIGNS.items():
        semantics = facemesh_semantics(parser, landmarks, **options)
        start = time.perf_counter()
        subspaces = learn_subspaces(generator, semantics, space=space, n_samples=samples, specificity_samples=0,
                                    progress=False)
        seconds = time.perf_counter() - start
        measured = measure_specificity(generator, semantics, subspaces, n_samples=16, seed=424242)
        for name, result in measured.items():
            rows.append({"design": design, "semantic": name, "directions": result.directions,
                         "specificity": result.specificity, "low": result.interval[0], "high": result.interval[1],
                         "target_gain": result.target_gain, "learn_seconds": seconds})
        print(f"{design}: learned in {seconds:.0f} s", flush=True)
    names = list(dict.fromkeys(r["semantic"] for r in rows))
    lines = ["| semantic | " + " | ".join(SPECIFICITY_DESIGNS) + " |", "|---|" + "---|" * len(SPECIFICITY_DESIGNS)]
    for name in names:
        cells = []
        for design in SPECIFICITY_DESIGNS:
            found = [r for r in rows if r["design"] == design and r["semantic"] == name]
            cells.append(f"{found[0]['specificity']:.2f} ({found[0]['low']:.2f}–{found[0]['high']:.2f}), "
                         f"k = {found[0]['directions']}" if found else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["zoo"], choices=["zoo", "stylegan2-w", "stylegan2-s", "stylegan3-w"])
    parser.add_argument("--samples", type=int, nargs="+", default=[4],
                        help="samples per case (one number for all cases, or one per case)")
    parser.add_argument("--baseline-rows", type=int, default=8,
                        help="reverse passes per criterion actually run by the baseline (0: all)")
    parser.add_argument("--specificity", action="store_true", help="compare the specificity of the zoo designs instead")
    parser.add_argument("--specificity-samples", type=int, default=16, help="learning faces for --specificity")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.specificity:
        rows, text = specificity_comparison(args.specificity_samples)
        print(text)
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / "subspaces-specificity.json"
        out.write_text(json.dumps({"meta": {"torch": torch.__version__, "samples": args.specificity_samples},
                                   "rows": rows, "table": text}, indent=1))
        print(f"wrote {out}")
        return
    if args.worker:
        part, name, samples, rows, folder = args.worker
        print(json.dumps(worker(part, name, int(samples), int(rows), folder)))
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if len(args.samples) not in (1, len(args.cases)):
        parser.error("--samples takes one number, or one per case")
    samples = args.samples * len(args.cases) if len(args.samples) == 1 else args.samples
    rows = [run_case(case, n, args.baseline_rows) for case, n in zip(args.cases, samples)]
    text = table(rows)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    out = RESULTS / "subspaces.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows, "table": text}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
