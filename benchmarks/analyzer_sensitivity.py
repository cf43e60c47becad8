"""Can the offline analyzers see face geometry? Controlled warps and pixel-local edits on zoo faces.

The planted-shortcut suite labels faces by landmark measurements (eye openness from the iris
model's eyelids; mouth opening and jaw width from FaceMesh), and the geometric semantics are
learned from landmark criteria. Both are only as
good as FaceMesh's response to the geometry of a 64² DCGAN face. This script measures that
response directly, with two controls:

* **Controlled warps.** Each face is warped so that one feature changes by a known amount: the
  eyes or the mouth stretched vertically, the lower face horizontally, by a smooth local
  magnification of ``1 / (1 − s)`` at the feature's centre (``s`` = ``--strengths``). Reported:
  the relative change of the planted measurement (:data:`cfexplain.trust.PLANTED_MEASUREMENTS`).
  A faithful measurement of the eye's opening changes by tens of per cent under a 1.5–2×
  stretch; a colour control (skin luminance under a known brightening of the skin) shows what a
  faithful response looks like.
* **Pixel-local edits.** Random pixel noise restricted to a feature's region, against noise
  over the whole image, both of unit norm: how much more selectively the feature's landmarks
  move than the other landmarks (first-order, one JVP per edit; 1 = no more selective than
  noise anywhere). This is the ceiling that *any* generator edit faces with the landmark criteria.

Usage::

    python benchmarks/analyzer_sensitivity.py [--faces 16] [--strengths 0.15 0.3 0.5]

Prints two tables and writes ``benchmarks/results/analyzer-sensitivity.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import jvp, vmap

RESULTS = Path(__file__).resolve().parent / "results"

# feature → (landmark group at its centre, (horizontal, vertical) stretch weights, window σ as a fraction of the image)
WARPS = {
    "eye_openness": (("right_eye", "left_eye"), (0.0, 1.0), 0.06),
    "eye_openness (FaceMesh, before)": (("right_eye", "left_eye"), (0.0, 1.0), 0.06),
    "mouth_opening": (("lips",), (0.0, 1.0), 0.08),
    "jaw_width": (("lips",), (1.0, 0.0), 0.22),
}
LOCAL_REGIONS = {"eyes": "eyes", "lips": "lips"}


def local_stretch(images: torch.Tensor, centres: torch.Tensor, weights: tuple[float, float], strength: float,
                  sigma: float) -> torch.Tensor:
    """Magnify ``images`` around ``centres (N, K, 2)`` (pixels) by ``1 / (1 − strength)`` at each centre,
    along x and/or y (``weights``), fading out with a Gaussian window of ``sigma`` pixels."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype), torch.arange(w, dtype=images.dtype), indexing="ij")
    dx, dy = torch.zeros(n, h, w), torch.zeros(n, h, w)
    for k in range(centres.shape[1]):
        cx, cy = centres[:, k, 0, None, None], centres[:, k, 1, None, None]
        window = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
        dx = dx - strength * weights[0] * (xs - cx) * window
        dy = dy - strength * weights[1] * (ys - cy) * window
    grid = torch.stack([(xs + dx) / (w - 1) * 2 - 1, (ys + dy) / (h - 1) * 2 - 1], dim=-1)
    return F.grid_sample(images, grid, align_corners=True, padding_mode="border")


def facemesh_eye_openness(images: torch.Tensor, parser, detector) -> torch.Tensor:
    """The suite's earlier eye-openness label, from FaceMesh's eyelid points (159–145 / 33–133,
    386–374 / 362–263): kept here as the control the iris model's measurement is compared with."""
    p = detector.landmarks(images)

    def ratio(a: int, b: int, c: int, d: int) -> torch.Tensor:
        return (p[:, a] - p[:, b]).norm(dim=1) / (p[:, c] - p[:, d]).norm(dim=1)

    return (ratio(159, 145, 33, 133) + ratio(386, 374, 362, 263)) / 2


def measure(name: str, images: torch.Tensor, parser, detector) -> torch.Tensor:
    from cfexplain.trust import planted_measurement

    if name == "eye_openness (FaceMesh, before)":
        return facemesh_eye_openness(images, parser, detector)
    points = detector.landmarks(images)
    return planted_measurement(name).measure(images, parser.parse_landmarks(points, *images.shape[-2:]), points)


def warp_responses(images, parser, detector, strengths) -> list[dict]:
    """Relative change of each geometric measurement under its controlled warp, and of skin
    luminance under a known brightening of the skin (the colour control)."""
    points = detector.landmarks(images)
    rows = []
    for name, (groups, weights, sigma) in WARPS.items():
        centres = torch.stack([points[:, list(detector.group(g))].mean(dim=1) for g in groups], dim=1)
        before = measure(name, images, parser, detector)
        for strength in strengths:
            warped = local_stretch(images, centres, weights, strength, sigma * images.shape[-1])
            after = measure(name, warped, parser, detector)
            change = (after / before - 1).abs()
            rows.append({"measurement": name, "edit": f"stretch ×{1 / (1 - strength):.2f} at the centre",
                         "magnification": 1 / (1 - strength), "median_relative_change": float(change.median()),
                         "faces_changed_over_10pct": float((change > 0.1).double().mean())})
    skin = parser.parse_landmarks(points, *images.shape[-2:]).mask("skin", soft=False)
    before = measure("skin_luminance", images, parser, detector)
    for gain in (1.05, 1.1, 1.2):
        unit = (images + 1) / 2
        brighter = torch.where(skin > 0.5, (unit * gain).clamp(0, 1), unit) * 2 - 1
        change = (measure("skin_luminance", brighter, parser, detector) / before - 1).abs()
        rows.append({"measurement": "skin_luminance (control)", "edit": f"skin × {gain:g}", "magnification": gain,
                     "median_relative_change": float(change.median()),
                     "faces_changed_over_10pct": float((change > 0.1).double().mean())})
    return rows


def local_specificity(images, parser, detector, iris, edits: int = 32) -> list[dict]:
    """How selectively a landmark group moves under unit pixel noise inside its region, relative to
    the other FaceMesh landmarks, against unit noise over the whole image (1 = no more selective).
    Rows: FaceMesh's eye and lip points, and the iris model's eyelid points (``iris``)."""
    points = detector.landmarks(images)
    parsing = parser.parse_landmarks(points, *images.shape[-2:])
    cases = [(group, region, detector, list(detector.group(group)), group) for group, region in LOCAL_REGIONS.items()]
    cases.append(("iris eyelids", "eyes", iris, list(iris.group("eyes")), "eyes"))
    rows = []
    for label, region, target_detector, ids, facemesh_group in cases:
        excluded = set(detector.group(facemesh_group))
        others = [i for i in range(detector.num_points) if i not in excluded]
        mask = parsing.mask(region, soft=True)
        ratios = []
        for i in range(images.shape[0]):
            x = images[i:i + 1]
            noise = torch.randn(edits, *x.shape[1:], generator=torch.Generator().manual_seed(i))
            local = noise * mask[i]

            def outputs(y):
                return target_detector.landmarks(y)[0, ids], detector.landmarks(y)[0, others]

            def moved(tangents):
                tangents = tangents / tangents.flatten(1).norm(dim=1)[:, None, None, None]
                target, keep = vmap(lambda t: jvp(outputs, (x,), (t[None],))[1])(tangents)
                return target.square().sum(dim=(1, 2)).mean(), keep.square().sum(dim=(1, 2)).mean()

            (tl, kl), (tg, kg) = moved(local), moved(noise)
            ratios.append(float(((tl / tg) / (kl / kg)).sqrt()))
        ratios_t = torch.tensor(ratios)
        rows.append({"landmarks": label, "region": region, "median_specificity": float(ratios_t.median()),
                     "max_specificity": float(ratios_t.max()), "faces": len(ratios)})
    return rows


def main() -> None:
    parser_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser_.add_argument("--faces", type=int, default=16)
    parser_.add_argument("--strengths", type=float, nargs="+", default=[0.15, 0.3, 0.5])
    parser_.add_argument("--seed", type=int, default=999)
    args = parser_.parse_args()
    from cfexplain import zoo

    torch.set_grad_enabled(False)
    generator, detector = zoo.dcgan_faces(), zoo.facemesh()
    face_parser = zoo.facemesh_parser()
    images = generator.synthesize(generator.sample(args.faces, seed=args.seed))
    start = time.perf_counter()
    warps = warp_responses(images, face_parser, detector, args.strengths)
    torch.set_grad_enabled(True)
    local = local_specificity(images, face_parser, detector, zoo.iris(facemesh_detector=detector))
    print(f"Controlled warps, {args.faces} zoo faces (relative change of the planted measurement):")
    print(f"{'measurement':<32} {'edit':<28} {'median change':>13} {'faces > 10 %':>12}")
    for row in warps:
        print(f"{row['measurement']:<32} {row['edit']:<28} {row['median_relative_change']:>13.1%} "
              f"{row['faces_changed_over_10pct']:>12.0%}")
    print("\nLandmarks under pixel noise inside the feature's region vs anywhere, against the other FaceMesh "
          "landmarks (1 = no more selective):")
    for row in local:
        print(f"{row['landmarks']:<14} median {row['median_specificity']:.2f}  max {row['max_specificity']:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "analyzer-sensitivity.json").write_text(json.dumps({
        "faces": args.faces, "seed": args.seed, "warps": warps, "pixel_local": local,
        "seconds": time.perf_counter() - start, "machine": platform.platform(), "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
