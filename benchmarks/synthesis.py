"""Synthesis speed and memory: cfexplain's StyleGAN2 against a grouped-convolution baseline.

For config-f shapes (random weights) at 256² and 1024², batch 1 and 4, this measures forward and
forward+backward (gradient with respect to the W+ codes, as Jacobian work needs) time and peak
memory per image, for:

* ``cfexplain``: :class:`cfexplain.StyleGAN2Generator` at full resolution, and
  ``cfexplain-exit256``: the same 1024² generator stopping at 256²;
* ``grouped``: a straightforward baseline written here: per-sample modulated weights applied
  with a grouped convolution (batch folded into groups), separate noise/bias/activation steps,
  the same weights.

Times: the implementations of a case are timed in one process, their calls alternating, so
that load drifts on a shared machine hit all of them alike; medians of ``--repeats`` calls after a
warm-up. Peak memory: each implementation × case × mode runs once in a fresh process; it is the
growth of the peak resident set (CPU, ``VmHWM``) or of peak allocated memory (CUDA) during that
first call, over what was in use before it.

Usage::

    python benchmarks/synthesis.py [--device cpu|cuda] [--repeats 3] [--quick]

Prints a table and writes ``benchmarks/results/synthesis.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- the baseline


def _baseline_fir(x: torch.Tensor, kernel: torch.Tensor, pad0: int, pad1: int) -> torch.Tensor:
    channels = x.shape[1]
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    return F.conv2d(x, (kernel * 4).to(x.dtype)[None, None].repeat(channels, 1, 1, 1), groups=channels)


def _baseline_modconv(layer, x, style, kernel, demodulate=True, up=False, gain=1.0):
    n, c_in, h, w = x.shape
    weight = layer.weight[None] * style[:, None, :, None, None] * gain  # [N, O, I, k, k]
    if demodulate:
        weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    c_out, k = weight.shape[1], weight.shape[-1]
    x = x.reshape(1, n * c_in, h, w)
    if up:
        weight = weight.transpose(1, 2).reshape(n * c_in, c_out, k, k)
        x = F.conv_transpose2d(x, weight, stride=2, groups=n)
        x = _baseline_fir(x, kernel, 1, 1)
    else:
        x = F.conv2d(x, weight.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n)
    return x.reshape(n, c_out, *x.shape[2:])


def baseline_synthesize(generator, ws: torch.Tensor) -> torch.Tensor:
    """Grouped-convolution StyleGAN2 synthesis with the generator's weights and const noise."""
    styles = iter(generator.styles_from_ws(ws))
    kernel = generator.synthesis.resample_kernel
    img = x = None
    for block in generator.synthesis.blocks():
        layers = [block.conv1] if block.resolution == 4 else [block.conv0, block.conv1]
        if block.resolution == 4:
            x = block.const[None].repeat(ws.shape[0], 1, 1, 1)
        for layer in layers:
            x = _baseline_modconv(layer, x, next(styles), kernel, up=layer.up)
            x = x + layer.noise_strength * layer.noise_const
            x = x + layer.bias[None, :, None, None]
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        rgb = _baseline_modconv(block.torgb, x, next(styles), kernel, demodulate=False,
                                gain=block.torgb.weight_gain)
        rgb = rgb + block.torgb.bias[None, :, None, None]
        if img is None:
            img = rgb
        else:
            n, c, h, w = img.shape
            up = F.pad(img.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * h, 2 * w)
            img = _baseline_fir(up, kernel, 2, 1) + rgb
    return img


# --------------------------------------------------------------------------- one measurement


def _reset_peak(device: torch.device) -> int:
    """Reset the peak-memory counter; return the memory in use now."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident set size
    return _proc_status_kb("VmRSS") * 1024


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return _proc_status_kb("VmHWM") * 1024


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


IMPLS = {  # name → (uses the baseline, early-exit resolution)
    "grouped": (True, None),
    "cfexplain": (False, None),
    "cfexplain-exit256": (False, 256),
}


def _build(generator_resolution: int, batch: int, device: str):
    from cfexplain.generators import StyleGAN2Config, StyleGAN2Generator

    dev = torch.device(device)
    generator = StyleGAN2Generator(StyleGAN2Config.config_f(generator_resolution), seed=0).to(dev)
    generator.requires_grad_(False).eval()
    return dev, generator, generator.sample(batch, space="w+", seed=0)


def _call(generator, ws: torch.Tensor, impl: str, mode: str) -> None:
    baseline, early = IMPLS[impl]

    def run(codes):
        return baseline_synthesize(generator, codes) if baseline else generator.synthesize(codes, resolution=early)

    if mode == "forward":
        with torch.no_grad():
            run(ws)
    else:
        codes = ws.clone().requires_grad_(True)
        run(codes).square().mean().backward()


def time_case(impls: list[str], generator_resolution: int, batch: int, mode: str, repeats: int, device: str) -> dict:
    """Median seconds per image of each implementation, timed in one process with the calls
    alternating between implementations, so that machine load drifts hit all of them alike."""
    dev, generator, ws = _build(generator_resolution, batch, device)
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for impl in impls:
        _call(generator, ws, impl, mode)  # warm-up
    for round_ in range(repeats):
        for impl in (impls if round_ % 2 == 0 else impls[::-1]):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            _call(generator, ws, impl, mode)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(t) / batch for impl, t in times.items()}


def peak_memory(impl: str, generator_resolution: int, batch: int, mode: str, device: str) -> float:
    """MB per image by which the first call of a fresh process raises peak memory."""
    dev, generator, ws = _build(generator_resolution, batch, device)
    before = _reset_peak(dev)
    _call(generator, ws, impl, mode)
    return max(_peak(dev) - before, 0) / batch / 2**20


def check_agreement(device: str) -> float:
    """Max relative difference between cfexplain and the baseline on a 64² config-f generator."""
    from cfexplain.generators import StyleGAN2Config, StyleGAN2Generator

    generator = StyleGAN2Generator(StyleGAN2Config.config_f(64), seed=0).to(device)
    with torch.no_grad():
        for layer in generator.synthesis.modulated_layers():
            if hasattr(layer, "noise_strength"):
                layer.noise_strength.fill_(0.1)
        ws = generator.sample(2, space="w+", seed=0)
        ours, base = generator.synthesize(ws), baseline_synthesize(generator, ws)
    return float((ours - base).abs().max() / base.abs().max())


# --------------------------------------------------------------------------- driver


CASES = [  # (generator resolution, implementations compared in one timing process)
    (256, ["grouped", "cfexplain"]),
    (1024, ["grouped", "cfexplain", "cfexplain-exit256"]),
]


def _run_worker(args_list: list[str]):
    out = subprocess.run([sys.executable, __file__, "--worker", *args_list], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args_list} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    lines = [
        "| generator | output | batch | impl | fwd s/img | fwd+bwd s/img | fwd MB/img | fwd+bwd MB/img | fwd speed-up | fwd+bwd speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["generator_resolution"], r["batch"], r["impl"]): r for r in rows}
    for r in rows:
        base = by_key[(r["generator_resolution"], r["batch"], "grouped")]
        early = IMPLS[r["impl"]][1]
        output = f"{early}² (early exit)" if early else f"{r['generator_resolution']}²"
        speed = [base[f"{m}_s_per_image"] / r[f"{m}_s_per_image"] for m in ("forward", "forward_backward")]
        lines.append(
            f"| {r['generator_resolution']}² | {output} | {r['batch']} | {r['impl']} "
            f"| {r['forward_s_per_image']:.3f} | {r['forward_backward_s_per_image']:.3f} "
            f"| {r['forward_peak_mb_per_image']:.0f} | {r['forward_backward_peak_mb_per_image']:.0f} "
            f"| {speed[0]:.2f}× | {speed[1]:.2f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per implementation (default: %(default)s)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--quick", action="store_true", help="256² cases only")
    parser.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--impls", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--generator-resolution", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "time":
        print(json.dumps(time_case(args.impls, args.generator_resolution, args.batch, args.mode, args.repeats, args.device)))
        return
    if args.worker == "memory":
        print(json.dumps(peak_memory(args.impls[0], args.generator_resolution, args.batch, args.mode, args.device)))
        return

    agreement = check_agreement(args.device)
    print(f"cfexplain vs baseline, max relative difference of images: {agreement:.2e}")
    rows = []
    for generator_resolution, impls in CASES:
        if args.quick and generator_resolution != 256:
            continue
        for batch in args.batches:
            row = {impl: {"impl": impl, "generator_resolution": generator_resolution, "batch": batch, "device": args.device}
                   for impl in impls}
            for mode in ("forward", "forward_backward"):
                common = ["--generator-resolution", str(generator_resolution), "--batch", str(batch), "--mode", mode,
                          "--device", args.device]
                times = _run_worker(["time", "--impls", *impls, "--repeats", str(args.repeats), *common])
                for impl in impls:
                    row[impl][f"{mode}_s_per_image"] = times[impl]
                    row[impl][f"{mode}_peak_mb_per_image"] = _run_worker(["memory", "--impls", impl, *common])
                print(f"  {generator_resolution}² batch {batch} {mode:16s}: "
                      + ", ".join(f"{impl} {times[impl]:.3f} s/img" for impl in impls), flush=True)
            rows += list(row.values())
    table = _table(rows)
    print(table)
    early = {}
    for r in rows:
        if r["impl"] == "cfexplain-exit256":
            full = next(x for x in rows if x["impl"] == "cfexplain" and x["generator_resolution"] == 1024 and x["batch"] == r["batch"])
            early[r["batch"]] = {m: full[f"{m}_s_per_image"] / r[f"{m}_s_per_image"] for m in ("forward", "forward_backward")}
            early[r["batch"]].update({f"{m}_memory": full[f"{m}_peak_mb_per_image"] / max(r[f"{m}_peak_mb_per_image"], 1e-9)
                                      for m in ("forward", "forward_backward")})
            print(f"early exit at 256² vs full 1024², batch {r['batch']}: time {early[r['batch']]['forward']:.1f}× (forward), "
                  f"{early[r['batch']]['forward_backward']:.1f}× (forward+backward) cheaper; peak memory "
                  f"{early[r['batch']]['forward_memory']:.1f}× / {early[r['batch']]['forward_backward_memory']:.1f}× lower")
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": torch.get_num_threads(), "device": args.device, "repeats": args.repeats,
            "agreement_max_rel_diff": agreement}
    (RESULTS / "synthesis.json").write_text(json.dumps({"meta": meta, "rows": rows, "early_exit": early,
                                                        "table": table}, indent=1))
    print(f"wrote {RESULTS / 'synthesis.json'}")


if __name__ == "__main__":
    main()
