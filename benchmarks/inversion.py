"""Inversion of real photos into the zoo DCGAN: reconstruction quality, decisions that survive,
what each loss term buys, and time per photo.

Photos (:func:`cfexplain.zoo.example_photos`, from pinned PyPI wheels): scikit-image's astronaut,
insightface's two sample images (one face; a group of six, aligned with ``multiple="all"``) and
``--lfw`` faces of scikit-image's LFW subset (25² grey crops, padded). Photos without a usable face
are skipped and counted. Each variant inverts every aligned photo into ``"s"`` (the subspaces'
space) and reports:

* PSNR of the reconstruction (median, and the 10th percentile);
* landmark error: mean FaceMesh point distance between photo and reconstruction over the
  inter-ocular distance (NME), median;
* survival: the share of photos whose zoo gender decision is the same on the reconstruction
  (the faithfulness gate), with the control of a random face: the share of photos whose decision a
  randomly drawn zoo face shares (the survival a reconstruction that ignored the photo would get);
  and the survival among the photos the classifier decides with p ≥ 0.8;
* seconds per photo (inversion only, at ``--batch``).

Then the speed comparison, side by side in one run: the default inversion at batch 1 (``--speed``
photos one at a time) against batch 64, as throughput (photos per second) and its ratio; and the
alignment time per photo.

Usage::

    python benchmarks/inversion.py [--lfw 100] [--steps 300] [--variants default pixel ...]

Prints tables and writes ``benchmarks/results/inversion.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

VARIANTS = {
    "default": {},
    "no prior": {"loss": {"prior": 0.0}},
    "+multiscale": {"loss": {"multiscale": 1.0}},
    "+landmarks": {"loss": {"landmarks": 10.0}},
    "one start": {"starts": 1},
    "500 steps": {"steps": 500},
    "z only": {"optimize_space": "z"},
}
"""Inversion settings compared, each one change from the default (``invert``'s defaults: the pixel
loss with a 1e-3 prior, 16 starts, 300 steps, in ``"s"``); ``loss`` entries set
:class:`~cfexplain.photos.InversionLoss` fields."""


def _nme(facemesh, photos: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    from cfexplain.analyzers.facemesh import FACEMESH_OUTLINES

    with torch.no_grad():
        a, b = facemesh.landmarks(photos), facemesh.landmarks(reconstructions)
    eyes = [list(FACEMESH_OUTLINES["right_eye"]), list(FACEMESH_OUTLINES["left_eye"])]
    ocular = (a[:, eyes[0]].mean(1) - a[:, eyes[1]].mean(1)).norm(dim=1)
    return (a - b).norm(dim=-1).mean(1) / ocular


def _options(name: str, steps: int, batch: int) -> dict:
    from cfexplain.photos import InversionLoss

    spec = dict(VARIANTS[name])
    options = {"steps": steps, "batch_size": batch}
    if "loss" in spec:
        options["loss"] = InversionLoss(**spec.pop("loss"))
    options.update(spec)
    return options


def main() -> None:
    from cfexplain import zoo
    from cfexplain.photos import align_faces, check_faithfulness, invert

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=int, default=100, help="LFW faces (1-100)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--speed", type=int, default=8, help="photos inverted one at a time for the batch-1 rate")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    torch.manual_seed(0)
    generator, classifier, facemesh = zoo.dcgan_faces(), zoo.gender_classifier(), zoo.facemesh()
    photos = zoo.example_photos(["astronaut", "hanks", "group", "lfw"], lfw_count=args.lfw)
    start = time.perf_counter()
    aligned = align_faces(photos, generator, facemesh=facemesh, multiple="all", skip_unusable=True)
    align_seconds = (time.perf_counter() - start) / len(photos)
    print(f"{len(photos)} photos → {len(aligned)} faces aligned, {len(aligned.skipped)} skipped "
          f"({', '.join(sorted({r for _, r in aligned.skipped})) or 'none'}); {align_seconds:.2f} s per photo", flush=True)

    with torch.no_grad():  # the control: does a random zoo face share the photo's decision?
        random_faces = generator.synthesize(generator.sample(len(aligned), seed=99))
        same = classifier.predict(random_faces) == classifier.predict(aligned.images)
    random_survival = float(same.double().mean())

    rows = []
    for name in args.variants:
        t = time.perf_counter()
        result = invert(generator, aligned.images, space="s", names=aligned.names, **_options(name, args.steps, args.batch))
        seconds = (time.perf_counter() - t) / len(aligned)
        gate = check_faithfulness(classifier, result)
        nme = _nme(facemesh, aligned.images, result.reconstructions)
        psnr = result.psnr.double()
        table = gate.table()
        confident = table["p_photo"] >= 0.8
        rows.append({"variant": name, "faces": len(aligned), "psnr_median": float(psnr.median()),
                     "psnr_p10": float(psnr.quantile(0.1)), "nme_median": float(nme.median()),
                     "survival": gate.survival_rate, "random_face_survival": random_survival,
                     "confident_faces": int(confident.sum()),
                     "survival_confident": float(table.loc[confident, "faithful"].mean()),
                     "seconds_per_photo": seconds})
        print(f"{name:>18}: PSNR {rows[-1]['psnr_median']:.2f} dB (p10 {rows[-1]['psnr_p10']:.2f}), NME "
              f"{rows[-1]['nme_median']:.3f}, survival {gate.survival_rate:.2f} (random face {random_survival:.2f}; "
              f"{rows[-1]['survival_confident']:.2f} of the {int(confident.sum())} decided with p ≥ 0.8), "
              f"{seconds:.2f} s/photo", flush=True)

    speed_faces = aligned.images[:args.speed]
    t = time.perf_counter()
    for i in range(len(speed_faces)):
        invert(generator, speed_faces[i:i + 1], space="s", steps=args.steps, batch_size=1)
    single = len(speed_faces) / (time.perf_counter() - t)
    batch_faces = aligned.images[:64] if len(aligned) >= 64 else aligned.images.repeat(64 // len(aligned) + 1, 1, 1, 1)[:64]
    t = time.perf_counter()
    invert(generator, batch_faces, space="s", steps=args.steps, batch_size=64)
    batched = 64 / (time.perf_counter() - t)
    speed = {"batch1_photos_per_s": single, "batch64_photos_per_s": batched, "ratio": batched / single,
             "batch1_seconds_per_photo": 1 / single, "align_seconds_per_photo": align_seconds}
    print(f"speed: batch 1 {single:.3f} photos/s ({1 / single:.1f} s/photo), batch 64 {batched:.3f} photos/s; "
          f"ratio {batched / single:.1f}×; alignment {align_seconds:.2f} s/photo")

    out = RESULTS / "inversion.json"
    out.write_text(json.dumps({
        "meta": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                 "steps": args.steps, "batch": args.batch, "photos": len(photos), "faces": len(aligned),
                 "skipped": aligned.skipped},
        "variants": rows, "speed": speed}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
