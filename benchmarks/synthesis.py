"""Synthesis speed and memory: cfexplain's StyleGAN2 against a grouped-convolution baseline.

For config-f shapes (random weights) at 256² and 1024², batch 1 and 4, this measures forward and
forward+backward (gradient with respect to the W+ codes, as Jacobian work needs) time and peak
memory per image, for:

* ``cfexplain``: :class:`cfexplain.StyleGAN2Generator` (full resolution, and early exit at 256²);
* ``grouped``: a straightforward baseline written here: per-sample modulated weights applied
  with a grouped convolution (batch folded into groups), separate noise/bias/activation steps,
  the same weights.

Each measurement (implementation × case × mode) runs in a fresh subprocess, so its peak memory is
its own; the implementations of a case run back to back in the same invocation, so their ratios
compare like with like on a noisy machine. Peak memory is the growth of the peak resident set
(CPU, ``VmHWM``) or of peak allocated memory (CUDA) during the first call, over what was in use
before it; times are medians of further calls.

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


def measure(impl: str, resolution: int, generator_resolution: int, batch: int, mode: str, repeats: int,
            device: str) -> dict:
    """Time and peak memory of one implementation, case and mode ("forward" or "forward_backward").

    Peak memory is measured on the first call of a fresh process (what a user's first call costs);
    times are the median of ``repeats`` further calls.
    """
    from cfexplain.generators import StyleGAN2Config, StyleGAN2Generator

    dev = torch.device(device)
    generator = StyleGAN2Generator(StyleGAN2Config.config_f(generator_resolution), seed=0).to(dev)
    generator.requires_grad_(False).eval()
    ws = generator.sample(batch, space="w+", seed=0)
    early = None if resolution == generator_resolution else resolution

    def run(codes):
        if impl == "grouped":
            return baseline_synthesize(generator, codes)
        return generator.synthesize(codes, resolution=early)

    def call():
        if mode == "forward":
            with torch.no_grad():
                run(ws)
        else:
            codes = ws.clone().requires_grad_(True)
            run(codes).square().mean().backward()

    before = _reset_peak(dev)
    call()
    peak = _peak(dev)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    return {"impl": impl, "resolution": resolution, "generator_resolution": generator_resolution, "batch": batch,
            "mode": mode, "device": device, "s_per_image": statistics.median(times) / batch,
            "peak_mb_per_image": max(peak - before, 0) / batch / 2**20}


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


CASES = [  # (output resolution, generator resolution)
    (256, 256),
    (1024, 1024),
    (256, 1024),  # early exit
]


def _run_worker(args_list: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args_list], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args_list} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _merge(rows: list[dict]) -> list[dict]:
    """One row per (case, impl) with both modes' numbers."""
    merged: dict[tuple, dict] = {}
    for r in rows:
        key = (r["resolution"], r["generator_resolution"], r["batch"], r["impl"])
        entry = merged.setdefault(key, {k: r[k] for k in ("impl", "resolution", "generator_resolution", "batch", "device")})
        entry[f"{r['mode']}_s_per_image"] = r["s_per_image"]
        entry[f"{r['mode']}_peak_mb_per_image"] = r["peak_mb_per_image"]
    return list(merged.values())


def _table(rows: list[dict]) -> str:
    by_key = {(r["resolution"], r["generator_resolution"], r["batch"], r["impl"]): r for r in rows}
    lines = [
        "| output | generator | batch | impl | fwd s/img | fwd+bwd s/img | fwd MB/img | fwd+bwd MB/img | fwd speed-up | fwd+bwd speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (res, gres, batch, impl), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], -kv[0][0] if kv[0][0] != kv[0][1] else -10**6, kv[0][2], kv[0][3])):
        base = by_key.get((gres, gres, batch, "grouped"))
        fwd_ratio = base["forward_s_per_image"] / r["forward_s_per_image"] if base else float("nan")
        bwd_ratio = base["forward_backward_s_per_image"] / r["forward_backward_s_per_image"] if base else float("nan")
        label = f"{res}²" + (" (early exit)" if res != gres else "")
        lines.append(
            f"| {label} | {gres}² | {batch} | {impl} | {r['forward_s_per_image']:.3f} | {r['forward_backward_s_per_image']:.3f} "
            f"| {r['forward_peak_mb_per_image']:.0f} | {r['forward_backward_peak_mb_per_image']:.0f} "
            f"| {fwd_ratio:.2f}× | {bwd_ratio:.2f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--quick", action="store_true", help="256² cases only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generator-resolution", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.impl, args.resolution, args.generator_resolution, args.batch, args.mode,
                                 args.repeats, args.device)))
        return

    agreement = check_agreement(args.device)
    print(f"cfexplain vs baseline, max relative difference of images: {agreement:.2e}")
    rows = []
    cases = [c for c in CASES if not args.quick or c[1] == 256]
    for res, gres in cases:
        for batch in args.batches:
            impls = ["cfexplain"] if res != gres else ["grouped", "cfexplain"]
            for mode in ("forward", "forward_backward"):
                for impl in impls:
                    r = _run_worker(["--impl", impl, "--resolution", str(res), "--generator-resolution", str(gres),
                                     "--batch", str(batch), "--mode", mode, "--repeats", str(args.repeats),
                                     "--device", args.device])
                    rows.append(r)
                    print(f"  {impl:9s} {res}²/{gres}² batch {batch} {mode:16s}: {r['s_per_image']:.3f} s/img, "
                          f"{r['peak_mb_per_image']:.0f} MB/img", flush=True)
    rows = _merge(rows)
    table = _table(rows)
    print(table)
    early = {}
    for batch in args.batches:
        full = next((r for r in rows if r["resolution"] == r["generator_resolution"] == 1024 and r["batch"] == batch and r["impl"] == "cfexplain"), None)
        exit_ = next((r for r in rows if r["resolution"] == 256 and r["generator_resolution"] == 1024 and r["batch"] == batch), None)
        if full and exit_:
            early[batch] = {k: full[f"{k}_s_per_image"] / exit_[f"{k}_s_per_image"] for k in ("forward", "forward_backward")}
            print(f"early exit at 256² vs full 1024², batch {batch}: forward {early[batch]['forward']:.1f}× cheaper, "
                  f"forward+backward {early[batch]['forward_backward']:.1f}× cheaper")
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": torch.get_num_threads(), "device": args.device, "agreement_max_rel_diff": agreement}
    (RESULTS / "synthesis.json").write_text(json.dumps({"meta": meta, "rows": rows, "early_exit_speedup": early,
                                                        "table": table}, indent=1))
    print(f"wrote {RESULTS / 'synthesis.json'}")


if __name__ == "__main__":
    main()
