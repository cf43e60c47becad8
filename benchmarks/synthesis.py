"""Synthesis speed and memory: cfexplain's generators against straightforward baselines.

This measures forward and forward+backward (gradient with respect to the W+ codes, as Jacobian
work needs) time and peak memory per image, for two families (random weights):

* **StyleGAN2**, config-f shapes at 256² and 1024², batch 1 and 4:

  * ``cfexplain``: :class:`cfexplain.StyleGAN2Generator` at full resolution, and
    ``cfexplain-exit256``: the same 1024² generator stopping at 256²;
  * ``grouped``: a baseline written here: per-sample modulated weights applied with a grouped
    convolution (batch folded into groups), separate noise/bias/activation steps, the same weights.

* **StyleGAN3** T, at the golden fixtures' shape (32², 64 channels; batch 1 and 16) and at 256²
  (channel base 16384, at most 512 channels; batch 1 and 4: forward+backward holds about 4.6 GB
  per image there, so a batch of 16 needs about 75 GB):

  * ``cfexplain``: :class:`cfexplain.StyleGAN3Generator`;
  * ``direct``: a baseline written here: per-sample modulated weights in a grouped convolution,
    and each filter applied as it is defined, directly in 2-D: zeros inserted, the 2-D kernel
    (the outer product of the separable taps) convolved over the whole up-sampled map, then every
    ``down``-th output kept.

Times: the implementations of a case are timed in one process, their calls alternating, so
that load drifts on a shared machine hit all of them alike; medians of ``--repeats`` calls after a
warm-up. Peak memory: each implementation × case × mode runs once in a fresh process; it is the
growth of the peak resident set (CPU, ``VmHWM``) or of peak allocated memory (CUDA) during that
first call, over what was in use before it.

Usage::

    python benchmarks/synthesis.py [--device cpu|cuda] [--repeats 3] [--quick] [--family stylegan2 stylegan3]

Prints a table and writes ``benchmarks/results/synthesis.json`` (``synthesis-<family>.json`` for one family).
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


def _direct_upfirdn(x: torch.Tensor, taps: torch.Tensor | None, up: int, down: int, padding, gain: float) -> torch.Tensor:
    """Zero insertion, padding (negative crops), the whole 2-D kernel, decimation: no shortcuts."""
    n, c, h, w = x.shape
    if up > 1:
        spread = x.new_zeros(n, c, h * up, w * up)
        spread[:, :, ::up, ::up] = x
        x = spread
    left, right, top, bottom = padding
    x = F.pad(x, [left, right, top, bottom])
    if taps is not None:
        kernel = torch.outer(taps, taps) if taps.ndim == 1 else taps
        kernel = (kernel.flip([0, 1]) * gain).to(x.dtype)
        x = F.conv2d(x, kernel[None, None].repeat(c, 1, 1, 1), groups=c)
    elif gain != 1:
        x = x * gain
    return x[:, :, ::down, ::down]


def _direct_alias_free_layer(layer, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    plan, weight = layer.plan, layer.weight
    if plan.is_torgb:
        styles = styles / math.sqrt(weight[0].numel())
    else:
        weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    weight = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if not plan.is_torgb:
        weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    x = x * layer.magnitude_ema.rsqrt()
    x = F.conv2d(x.reshape(1, n * c_in, h, w), weight.reshape(n * c_out, c_in, k, k), padding=k - 1, groups=n)
    x = x.reshape(n, c_out, *x.shape[2:]) + layer.bias[None, :, None, None]
    x = _direct_upfirdn(x, layer.up_filter, plan.up_factor, 1, plan.padding, plan.up_factor ** 2)
    if not plan.is_torgb:
        x = F.leaky_relu(x, 0.2) * math.sqrt(2)
    if layer.conv_clamp is not None:
        x = x.clamp(-layer.conv_clamp, layer.conv_clamp)
    return _direct_upfirdn(x, layer.down_filter, 1, plan.down_factor, (0, 0, 0, 0), 1.0)


def direct_stylegan3_synthesize(generator, ws: torch.Tensor) -> torch.Tensor:
    """StyleGAN3 synthesis with per-sample weights and direct 2-D filtering, the generator's weights."""
    styles = generator.styles_from_ws(ws)
    x = generator.synthesis.input(styles[0])
    for layer, layer_styles in zip(generator.synthesis.layers(), styles[1:]):
        x = _direct_alias_free_layer(layer, x, layer_styles)
    return x * generator.synthesis.output_scale


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


IMPLS = {  # name → (the baseline's synthesis or None, early-exit resolution)
    "grouped": (baseline_synthesize, None),
    "direct": (direct_stylegan3_synthesize, None),
    "cfexplain": (None, None),
    "cfexplain-exit256": (None, 256),
}
BASELINES = {"stylegan2": "grouped", "stylegan3": "direct"}


def _stylegan3_config(generator_resolution: int):
    from cfexplain.generators import StyleGAN3Config

    if generator_resolution == 32:  # the golden fixtures' T configuration
        return StyleGAN3Config(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024, channel_max=64)
    return StyleGAN3Config(resolution=generator_resolution, channel_base=16384, channel_max=512)


def _generator(family: str, generator_resolution: int):
    from cfexplain.generators import StyleGAN2Config, StyleGAN2Generator, StyleGAN3Generator

    if family == "stylegan2":
        return StyleGAN2Generator(StyleGAN2Config.config_f(generator_resolution), seed=0)
    return StyleGAN3Generator(_stylegan3_config(generator_resolution), seed=0)


def _build(family: str, generator_resolution: int, batch: int, device: str):
    dev = torch.device(device)
    generator = _generator(family, generator_resolution).to(dev)
    generator.requires_grad_(False).eval()
    return dev, generator, generator.sample(batch, space="w+", seed=0)


def _call(generator, ws: torch.Tensor, impl: str, mode: str) -> None:
    baseline, early = IMPLS[impl]

    def run(codes):
        return baseline(generator, codes) if baseline else generator.synthesize(codes, resolution=early)

    if mode == "forward":
        with torch.no_grad():
            run(ws)
    else:
        codes = ws.clone().requires_grad_(True)
        run(codes).square().mean().backward()


def time_case(family: str, impls: list[str], generator_resolution: int, batch: int, mode: str, repeats: int,
              device: str) -> dict:
    """Median seconds per image of each implementation, timed in one process with the calls
    alternating between implementations, so that machine load drifts hit all of them alike."""
    dev, generator, ws = _build(family, generator_resolution, batch, device)
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


def peak_memory(family: str, impl: str, generator_resolution: int, batch: int, mode: str, device: str) -> float:
    """MB per image by which the first call of a fresh process raises peak memory."""
    dev, generator, ws = _build(family, generator_resolution, batch, device)
    before = _reset_peak(dev)
    _call(generator, ws, impl, mode)
    return max(_peak(dev) - before, 0) / batch / 2**20


def check_agreement(family: str, device: str) -> float:
    """Max relative difference between cfexplain and the family's baseline on a small generator
    (a 64² config-f StyleGAN2 with noise, the fixtures' 32² StyleGAN3 T)."""
    generator = _generator(family, 64 if family == "stylegan2" else 32).to(device)
    with torch.no_grad():
        if family == "stylegan2":
            for layer in generator.synthesis.modulated_layers():
                if hasattr(layer, "noise_strength"):
                    layer.noise_strength.fill_(0.1)
        ws = generator.sample(2, space="w+", seed=0)
        ours, base = generator.synthesize(ws), IMPLS[BASELINES[family]][0](generator, ws)
    return float((ours - base).abs().max() / base.abs().max())


# --------------------------------------------------------------------------- driver


CASES = [  # (family, generator resolution, batches, implementations compared in one timing process)
    ("stylegan2", 256, (1, 4), ["grouped", "cfexplain"]),
    ("stylegan2", 1024, (1, 4), ["grouped", "cfexplain", "cfexplain-exit256"]),
    ("stylegan3", 32, (1, 16), ["direct", "cfexplain"]),
    ("stylegan3", 256, (1, 4), ["direct", "cfexplain"]),  # batch 16 with gradients: ~75 GB (4.6 GB/image)
]


def _run_worker(args_list: list[str]):
    out = subprocess.run([sys.executable, __file__, "--worker", *args_list], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args_list} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    lines = [
        "| family | generator | output | batch | impl | fwd s/img | fwd+bwd s/img | fwd MB/img | fwd+bwd MB/img | fwd speed-up | fwd+bwd speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["family"], r["generator_resolution"], r["batch"], r["impl"]): r for r in rows}
    for r in rows:
        base = by_key[(r["family"], r["generator_resolution"], r["batch"], BASELINES[r["family"]])]
        early = IMPLS[r["impl"]][1]
        output = f"{early}² (early exit)" if early else f"{r['generator_resolution']}²"
        speed = [base[f"{m}_s_per_image"] / r[f"{m}_s_per_image"] for m in ("forward", "forward_backward")]
        lines.append(
            f"| {r['family']} | {r['generator_resolution']}² | {output} | {r['batch']} | {r['impl']} "
            f"| {r['forward_s_per_image']:.3f} | {r['forward_backward_s_per_image']:.3f} "
            f"| {r['forward_peak_mb_per_image']:.0f} | {r['forward_backward_peak_mb_per_image']:.0f} "
            f"| {speed[0]:.2f}× | {speed[1]:.2f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per implementation (default: %(default)s)")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default: 1 and 4 for StyleGAN2, "
                        "1 and 16 for StyleGAN3)")
    parser.add_argument("--family", nargs="+", choices=sorted(BASELINES), default=sorted(BASELINES))
    parser.add_argument("--quick", action="store_true", help="only the generators up to 256²")
    parser.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--impls", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--generator-resolution", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "time":
        print(json.dumps(time_case(args.family[0], args.impls, args.generator_resolution, args.batch, args.mode,
                                   args.repeats, args.device)))
        return
    if args.worker == "memory":
        print(json.dumps(peak_memory(args.family[0], args.impls[0], args.generator_resolution, args.batch, args.mode,
                                     args.device)))
        return

    agreement = {family: check_agreement(family, args.device) for family in args.family}
    for family, difference in agreement.items():
        print(f"{family}: cfexplain vs baseline, max relative difference of images: {difference:.2e}")
    rows = []
    for family, generator_resolution, batches, impls in CASES:
        if family not in args.family or (args.quick and generator_resolution > 256):
            continue
        for batch in args.batches or batches:
            row = {impl: {"family": family, "impl": impl, "generator_resolution": generator_resolution, "batch": batch,
                          "device": args.device} for impl in impls}
            for mode in ("forward", "forward_backward"):
                common = ["--family", family, "--generator-resolution", str(generator_resolution), "--batch", str(batch),
                          "--mode", mode, "--device", args.device]
                times = _run_worker(["time", "--impls", *impls, "--repeats", str(args.repeats), *common])
                for impl in impls:
                    row[impl][f"{mode}_s_per_image"] = times[impl]
                    row[impl][f"{mode}_peak_mb_per_image"] = _run_worker(["memory", "--impls", impl, *common])
                print(f"  {family} {generator_resolution}² batch {batch} {mode:16s}: "
                      + ", ".join(f"{impl} {times[impl]:.3f} s/img" for impl in impls), flush=True)
            rows += list(row.values())
    table = _table(rows)
    print(table)
    early = {}
    for r in rows:
        if r["impl"] == "cfexplain-exit256":
            full = next(x for x in rows if x["impl"] == "cfexplain" and x["family"] == "stylegan2"
                        and x["generator_resolution"] == 1024 and x["batch"] == r["batch"])
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
    name = "synthesis" if set(args.family) == set(BASELINES) else "synthesis-" + "+".join(args.family)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows, "early_exit": early,
                                                        "table": table}, indent=1))
    print(f"wrote {RESULTS / name}.json")


if __name__ == "__main__":
    main()
