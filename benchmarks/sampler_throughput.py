"""Sampler throughput (issue 2): graftbench's flow sampler against a plain diffusers loop.

Measures, in one run and interleaved so that load from other processes hits every contender
alike:
1. samples/s of `solve_flow(PixelFlowAdapter.velocity, noise, sigmas)` (how the suite samples,
   graftbench/tasks/unconditional/task.py `sample`) against the textbook diffusers loop
   (FlowMatchEulerDiscreteScheduler + `unet(x, t).sample` + `scheduler.step`) on the same
   weights, batch, step count and sigmas; both outputs are compared.
2. the FLOP/s each reaches (FLOPs from graftbench.flops, x NFE x batch / wall time) as a
   fraction of the FLOP/s of a large float32 matmul measured in the same run.
3. with --ablate (default), one network evaluation under each speed option on its own.

Every figure is a median over repeats; ratios are medians of per-repeat ratios of runs made
back to back, so they hold up better than any absolute figure on a shared machine.

    python benchmarks/sampler_throughput.py [--device cpu|cuda] [--quick] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import yaml
from diffusers import FlowMatchEulerDiscreteScheduler

from graftbench.flops import flops_per_sample
from graftbench.models.config import UNetConfig
from graftbench.models.pixel import PixelFlowAdapter, build_unet
from graftbench.sampling.flow import solve_flow
from graftbench.spec import resolve

REPO = Path(__file__).resolve().parents[1]


def suite_configs() -> dict[str, tuple[UNetConfig, int]]:
    """name -> (UNet size, batch): the unconditional task's cpu preset, read from its task file
    so the two cannot drift apart, and a 1.1M-parameter 28x28 model (full-size MNIST)."""
    spec = yaml.safe_load((REPO / "tasks" / "unconditional.yaml").read_text())
    cpu = resolve({"profile": "cpu", "tasks": ["unconditional"], **spec}, "unconditional")
    mnist28 = UNetConfig(
        sample_size=28,
        in_channels=1,
        block_out_channels=[32, 64, 64],
        layers_per_block=1,
        attention_levels=[2],
        norm_num_groups=8,
    )
    return {"cpu-preset-16px": (cpu.model, cpu.sample.batch_size), "mnist-28px": (mnist28, 250)}


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """(wall seconds, result) of one call, waiting for the device on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def matmul_gflops(n: int, device: torch.device, repeats: int = 3) -> list[float]:
    """GFLOP/s of (n x n) @ (n x n) in float32 (2 n^3 FLOPs), one figure per repeat."""
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, generator=g, device=device) for _ in range(2))
    c = torch.empty(n, n, device=device)
    torch.mm(a, b, out=c)  # warm-up: MKL/cuBLAS pick their kernels here
    return [
        2 * n**3 / timed(lambda: torch.mm(a, b, out=c), device)[0] / 1e9 for _ in range(repeats)
    ]


def diffusers_loop(unet, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """The textbook loop, as a diffusers user writes it."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise
    with torch.no_grad():
        for t in scheduler.timesteps:
            v = unet(x, t).sample
            x = scheduler.step(v, t, x).prev_sample
    return x


def ours_loop(velocity, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """How the suite samples, on the sigmas the diffusers loop uses (identical maths)."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(steps, device=noise.device)
    return solve_flow(velocity, noise, scheduler.sigmas)[0]


def fresh_adapter(net: torch.nn.Module, **speed) -> PixelFlowAdapter:
    """An adapter on its own copy of `net`: the channels_last option converts the weights it
    runs on, which must not leak into the other contenders."""
    return PixelFlowAdapter(copy.deepcopy(net), **speed)


class CompiledVelocity:
    """`velocity` on torch.compile(net): inductor, with weight freezing on CPU (pre-packs the
    oneDNN convolution weights and folds them in as constants). Static shapes: one graph per
    batch size (the suite's last batch of a run may be smaller and then compiles again), and
    with dynamic shapes inductor 2.11 failed a stride check on the 28x28 model under freezing."""

    def __init__(self, net: torch.nn.Module, device: torch.device):
        import torch._inductor.config as inductor_config

        inductor_config.freezing = device.type == "cpu"
        self.fn = torch.compile(copy.deepcopy(net), dynamic=False)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.fn(x, sigma * 1000).sample


@dataclass
class Row:
    """One (config, step count) line of the throughput table."""

    config: str
    params: int
    batch: int
    steps: int
    flops_per_nfe: int  # per sample, graftbench.flops on the plain network call
    contenders: dict[str, Callable[[int], torch.Tensor]]  # steps -> final state
    times: dict[str, list[float]] = field(default_factory=dict)  # wall s per repeat
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # vs the diffusers loop
    compile_s: float | None = None


def throughput_rows(args, device, configs) -> list[Row]:
    rows = []
    for name, (cfg, batch) in configs.items():
        torch.manual_seed(0)
        net = build_unet(cfg).to(device).eval()
        shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        t = torch.full((2,), 500.0, device=device)
        flops = flops_per_sample(
            partial(plain_call, net, t=t), torch.zeros(2, *shape, device=device)
        )
        g = torch.Generator(device=device).manual_seed(1)
        noise = torch.randn(batch, *shape, generator=g, device=device)
        contenders = {
            "diffusers": partial(diffusers_loop, net, noise),
            "ours": partial(ours_loop, fresh_adapter(net).velocity, noise),
        }
        compile_s = None
        if args.compile:
            contenders["ours+compile"] = partial(ours_loop, CompiledVelocity(net, device), noise)
            compile_s = timed(partial(contenders["ours+compile"], 1), device)[0]
        for fn in contenders.values():  # warm-up: oneDNN/cuDNN primitive caches, allocator
            fn(1)
        params = sum(p.numel() for p in net.parameters())
        for steps in args.steps or args.default_steps[name]:
            rows.append(Row(name, params, batch, steps, flops, contenders, compile_s=compile_s))
    return rows


def throughput(args, device, configs) -> tuple[list[Row], float]:
    """Sections 1 and 2: whole sampling runs, every contender back to back in each repeat.
    Returns the rows and the median matmul GFLOP/s, measured between the repeats."""
    rows = throughput_rows(args, device, configs)
    matmul = []
    for r in range(args.repeats):
        matmul += matmul_gflops(args.matmul_size, device)
        for row in rows:
            names = list(row.contenders)
            outs = {}
            for k in names if r % 2 == 0 else reversed(names):  # drifting load cancels out
                dt, outs[k] = timed(partial(row.contenders[k], row.steps), device)
                row.times.setdefault(k, []).append(dt)
            if r == 0:
                ref = outs["diffusers"]
                row.max_abs_diff = {k: (o - ref).abs().max().item() for k, o in outs.items()}
    return rows, statistics.median(matmul)


def plain_call(net, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return net(x, t).sample


def ablation(args, device, configs) -> list[dict]:
    """Section 3: one network evaluation (sigma = 0.5) per speed option, round robin."""
    rows = []
    for name, (cfg, batch) in configs.items():
        torch.manual_seed(0)
        net = build_unet(cfg).to(device).eval()
        x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=device)
        s = torch.full((batch,), 0.5, device=device)
        calls = ablation_calls(net, x, s, device)
        for fn in calls.values():
            fn()
        times = {k: [] for k in calls}
        for _ in range(args.ablate_repeats):
            for k, fn in calls.items():
                times[k].append(timed(fn, device)[0])
        base = times[next(iter(times))]
        for k, ts in times.items():
            speedup = statistics.median(b / t for b, t in zip(base, ts, strict=True))
            rows.append(
                {
                    "config": name,
                    "variant": k,
                    "s_per_nfe": statistics.median(ts),
                    "speedup": speedup,
                }
            )
    return rows


def ablation_calls(net, x, s, device) -> dict[str, Callable[[], torch.Tensor]]:
    """The speed options one at a time; each adapter runs on its own copy of `net`."""
    mib = 2**20

    def velocity(mode: str = "no_grad", **speed):
        return partial(velocity_call, fresh_adapter(net, **speed), x, s, mode)

    calls = {
        "textbook: net(x, t), NCHW, whole batch": partial(
            velocity_call, None, x, s, "no_grad", net
        ),
        "adapter, no speed options": velocity(cpu_chunk_bytes=None),
        "chunks of 1 MiB": velocity(cpu_chunk_bytes=mib),
        "chunks of 4 MiB (default)": velocity(),
        "chunks of 16 MiB": velocity(cpu_chunk_bytes=16 * mib),
        "channels_last, no chunks": velocity(cpu_channels_last=True, cpu_chunk_bytes=None),
        "channels_last + chunks of 4 MiB": velocity(cpu_channels_last=True),
        "default + inference_mode": velocity("inference_mode"),
    }
    if device.type == "cpu" and torch.get_num_threads() > 1:
        calls["default, 1 thread"] = velocity("1 thread")
    return calls


def velocity_call(adapter, x, s, mode: str, net=None) -> torch.Tensor:
    """One evaluation: adapter.velocity(x, s), or the plain net(x, 1000 s) when `net` is given,
    under no_grad, inference_mode, or no_grad with one intra-op thread."""
    threads = torch.get_num_threads()
    if mode == "1 thread":
        torch.set_num_threads(1)
    try:
        with torch.inference_mode() if mode == "inference_mode" else torch.no_grad():
            return plain_call(net, x, s * 1000) if net is not None else adapter.velocity(x, s)
    finally:
        torch.set_num_threads(threads)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarise(row: Row, matmul: float) -> dict:
    """Per contender: samples/s and GFLOP/s (medians), share of the matmul's GFLOP/s, and the
    speedup over the diffusers loop (median of the per-repeat ratios of back-to-back runs)."""
    gflop = row.flops_per_nfe * row.steps * row.batch / 1e9  # one whole run
    out = {}
    for k, ts in row.times.items():
        med = statistics.median(ts)
        pairs = zip(row.times["diffusers"], ts, strict=True)
        out[k] = {
            "sps": row.batch / med,
            "gflops": gflop / med,
            "util": gflop / med / matmul,
            "speedup": statistics.median(d / o for d, o in pairs),
        }
    return out


def report(args, device, rows, matmul, ablation_rows, load_before, wall) -> None:
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    print(
        f"\ndevice: {dev}; cores {os.cpu_count()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average before {load_before}, "
        f"after {_load()}; wall {wall:.0f} s; repeats {args.repeats}"
    )
    print(f"matmul {args.matmul_size}x{args.matmul_size} float32: {matmul:.1f} GFLOP/s (median)\n")
    keys = list(rows[0].contenders)
    head = ["config", "params", "batch", "steps"]
    head += [f"{k} samples/s" for k in keys] + [f"{k} / diffusers" for k in keys[1:]]
    head += [f"{k} GFLOP/s" for k in keys] + [f"{k} / matmul" for k in keys]
    head += [f"max abs diff {k}" for k in keys[1:]]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        f = summarise(row, matmul)
        cells = [row.config, f"{row.params / 1e6:.2f}M", row.batch, row.steps]
        cells += [f"{f[k]['sps']:.0f}" for k in keys]
        cells += [f"{f[k]['speedup']:.2f}" for k in keys[1:]]
        cells += [f"{f[k]['gflops']:.1f}" for k in keys]
        cells += [f"{100 * f[k]['util']:.0f}%" for k in keys]
        cells += [f"{row.max_abs_diff[k]:.1e}" for k in keys[1:]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for row in rows:
        if row.compile_s is not None and row.steps == max(
            r.steps for r in rows if r.config == row.config
        ):
            f = summarise(row, matmul)
            saved = (1 / f["ours"]["sps"] - 1 / f["ours+compile"]["sps"]) * row.batch / row.steps
            calls = f"{row.compile_s / saved:.0f}" if saved > 0 else "never"
            print(
                f"\n{row.config}: torch.compile took {row.compile_s:.0f} s (with its first call); "
                f"repaid after {calls} network calls of batch {row.batch}"
            )
    bad = [
        (r.config, r.steps, k, d)
        for r in rows
        for k, d in r.max_abs_diff.items()
        if not d <= args.atol
    ]
    print(
        f"\nall outputs within {args.atol:g} of the diffusers loop: {'NO ' + str(bad) if bad else 'yes'}"
    )
    if ablation_rows:
        print(
            "\none network evaluation, sigma = 0.5 (speedup: median of paired ratios to the first row)\n"
        )
        print("| config | variant | s per call | speedup |\n|---|---|---|---|")
        for r in ablation_rows:
            print(f"| {r['config']} | {r['variant']} | {r['s_per_nfe']:.3f} | {r['speedup']:.2f} |")


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="a smoke run of about 1.5 minutes")
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 3, quick 2)")
    p.add_argument("--steps", type=int, nargs="+", help="step counts for every config")
    p.add_argument("--matmul-size", type=int, help="reference matmul side (cpu 2048, cuda 8192)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="add ours on torch.compile(unet)")
    p.add_argument("--no-ablate", dest="ablate", action="store_false", help="skip section 3")
    p.add_argument("--configs", nargs="+", help="subset of: cpu-preset-16px mnist-28px")
    p.add_argument(
        "--atol",
        type=float,
        help="allowed max abs diff to diffusers (default "
        "1e-3 on cpu, 1e-2 on cuda, whose convolutions use TF32 by default)",
    )
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.atol = args.atol or (1e-3 if device.type == "cpu" else 1e-2)
    args.ablate_repeats = 1 if args.quick else 3
    args.matmul_size = args.matmul_size or (2048 if device.type == "cpu" else 8192)
    args.default_steps = (
        {"cpu-preset-16px": [1, 4], "mnist-28px": [2]}
        if args.quick
        else {"cpu-preset-16px": [1, 4, 16], "mnist-28px": [2, 8]}
    )
    load_before, t0 = _load(), time.perf_counter()
    configs = suite_configs()
    if args.configs:
        unknown = sorted(set(args.configs) - set(configs))
        if unknown:
            p.error(f"--configs: {unknown[0]!r} is not one of {', '.join(configs)}")
        configs = {k: v for k, v in configs.items() if k in args.configs}
    rows, matmul = throughput(args, device, configs)
    abl = ablation(args, device, configs) if args.ablate else []
    report(args, device, rows, matmul, abl, load_before, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
