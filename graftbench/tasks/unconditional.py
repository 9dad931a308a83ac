"""Unconditional image generation: a rectified-flow UNet2DModel on digits, FID vs FLOPs.

Data flow (one function per workflow rule):
    prepare_data   -> train.npz, test/ (PNG, the FID reference), train_subset/ (real-data floor)
    train_features -> features.pt (the "trained-cnn" FID back-end)
    pretrain       -> model.pt (EMA weights + config)
    sample         -> run folder: samples/ (PNG), conditions.jsonl, grid.png, metrics.json
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from graftbench import records
from graftbench.config import ConfigError, to_dict
from graftbench.data.images import DataConfig, load_images, split, write_png_folder
from graftbench.methods.inc import IncConfig
from graftbench.metrics.feature_net import FeatureNetConfig, train_feature_net
from graftbench.models.config import UNetConfig
from graftbench.train import TrainConfig, fit

# diffusers takes ~8 s to import: the model, sampler and path modules are imported inside
# the functions that need them, so data, feature and aggregation jobs start fast.


@dataclass
class PretrainConfig(TrainConfig):
    sigma_sampling: Literal["uniform", "logit_normal"] = "logit_normal"  # training-time law


@dataclass
class SampleConfig:
    solver: Literal["euler", "heun"] = "euler"  # ODE solver of the base flow
    steps: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32])  # step counts swept
    shift: float = 1.0  # time shift of the sigma grid (1 = uniform)
    n_samples: int = 1000  # images per run (same as data.n_test, so FID sizes match)
    batch_size: int = 250  # images per network call


@dataclass
class EvaluateConfig:
    fid_backends: list[Literal["inception", "trained-cnn"]] = field(
        default_factory=lambda: ["trained-cnn"]
    )  # feature networks FID is computed with; every table names them


@dataclass
class UnconditionalConfig:
    # base: the pre-trained flow at each sample.steps (table unconditional); inc: base plus
    # inverse noise correction at each inc.base_steps x inc.corrector_steps (table inc)
    methods: list[Literal["base", "inc"]] = field(default_factory=lambda: ["base"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # sampling seeds per setting
    data: DataConfig = field(default_factory=DataConfig)
    model: UNetConfig = field(default_factory=UNetConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    features: FeatureNetConfig = field(default_factory=FeatureNetConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    inc: IncConfig = field(default_factory=IncConfig)  # inverse noise correction (methods: inc)

    def __post_init__(self):
        if "inc" not in self.methods:
            return
        if self.sample.solver != "euler":
            raise ConfigError(
                f"unconditional.sample.solver: {self.sample.solver!r} cannot be used with method "
                "'inc', which inverts the Euler sampler; choose 'euler'"
            )
        missing = [s for s in self.inc.base_steps if s not in self.sample.steps]
        if missing:
            raise ConfigError(
                f"unconditional.inc.base_steps: {missing[0]} is not in unconditional.sample.steps "
                f"{self.sample.steps}; INC is compared with the base at the same step count"
            )
        for key in ("sample_size", "in_channels"):
            if getattr(self.inc.model, key) != getattr(self.model, key):
                raise ConfigError(
                    f"unconditional.inc.model.{key}: {getattr(self.inc.model, key)} must equal "
                    f"unconditional.model.{key} ({getattr(self.model, key)}): the corrector "
                    "outputs the base model's noise"
                )


def prepare_data(cfg: UnconditionalConfig, out: Path) -> None:
    images, labels = load_images(cfg.data)
    (train_x, train_y), (test_x, _) = split(images, labels, cfg.data.n_test, cfg.data.split_seed)
    write_png_folder(out / "test", test_x)
    # a train subset the size of the test set: FID(real, real) is the floor our FIDs sit on
    write_png_folder(out / "train_subset", train_x[: cfg.data.n_test])
    arrays = {"images": train_x} if train_y is None else {"images": train_x, "labels": train_y}
    with records.atomic_path(out / "train.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    records.write_json(
        out / "data.json",
        {
            "config": to_dict(cfg.data),
            "n_train": len(train_x),
            "n_test": len(test_x),
            "shape": list(images.shape[1:]),
        },
    )


def train_features(cfg: UnconditionalConfig, data: Path, out: Path, device: str = "cpu") -> None:
    arrays = np.load(data / "train.npz")
    if "labels" not in arrays:
        raise ConfigError(
            "evaluate.fid_backends: 'trained-cnn' needs a labelled dataset (mnist, digits8); "
            "use 'inception' for data.dataset: folder"
        )
    net, acc = train_feature_net(arrays["images"], arrays["labels"], cfg.features, device)
    arch = {
        "in_channels": net.body[0].in_channels,
        "image_size": net.image_size,
        "num_classes": net.head.out_features,
        "dim": cfg.features.dim,
    }
    # CPU weights, as train.fit saves them: the file loads anywhere
    records.save_checkpoint(
        out,
        {"model": net.cpu().state_dict(), "arch": arch, "train_accuracy": acc, "device": device},
        to_dict(cfg),
    )


def pretrain(
    cfg: UnconditionalConfig, data: Path, out: Path, log: Path | None = None, device: str = "cpu"
) -> None:
    from graftbench.models.pixel import PixelFlowAdapter
    from graftbench.paths import rectified_flow, sample_sigma

    torch.manual_seed(cfg.pretrain.seed)
    x = torch.from_numpy(np.load(data / "train.npz")["images"]).permute(0, 3, 1, 2).float()
    x = x / 127.5 - 1
    model = PixelFlowAdapter.from_config(cfg.model)  # initialised on the CPU, then moved
    model.network.to(device)

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        # drawn from fit's CPU generator (the same stream on every device), then moved
        x0 = x[torch.randint(len(x), (cfg.pretrain.batch_size,), generator=g)]
        noise = torch.randn(x0.shape, generator=g)
        sigma = sample_sigma(len(x0), g, cfg.pretrain.sigma_sampling)
        path = rectified_flow(x0.to(device), noise.to(device), sigma.to(device))
        return torch.nn.functional.mse_loss(model.denoise(path.xt, path.t), path.target)

    fit(model.network, loss_fn, cfg.pretrain, out, to_dict(cfg), log)


def load_model(path: Path, device: str = "cpu"):
    """The PixelFlowAdapter stored by `pretrain` (EMA weights), in eval mode on `device`."""
    from graftbench.config import parse
    from graftbench.models.pixel import PixelFlowAdapter

    ckpt = records.load_checkpoint(path)
    model = PixelFlowAdapter.from_config(parse(UNetConfig, ckpt["config"]["model"], "model"))
    model.network.load_state_dict(ckpt["model"])
    model.network.to(device).eval()
    return model


@torch.no_grad()
def sample(
    cfg: UnconditionalConfig,
    model_path: Path,
    steps: int,
    seed: int,
    out: Path,
    device: str = "cpu",
    corrector_path: Path | None = None,
    corrector_steps: int = 0,
) -> dict:
    """Generate cfg.sample.n_samples images with `steps` solver steps into run folder `out`;
    with a corrector (inverse noise correction), the noise first goes through
    `corrector_steps` Euler steps of the corrector flow.

    The initial noise depends on the seed only, not on `steps` or the corrector: every step
    count and method of a seed starts from the same noise (common random numbers), so their
    differences are not drowned by sampling noise.
    """
    from graftbench.flops import flops_per_sample
    from graftbench.methods.inc import sample as inc_sample
    from graftbench.sampling.flow import flow_sigmas, solve_flow

    model = load_model(model_path, device)
    corrector = load_model(corrector_path, device) if corrector_path else None
    sc = cfg.sample
    sigmas = flow_sigmas(steps, sc.shift, device=device)
    c_sigmas = flow_sigmas(corrector_steps, sc.shift, device=device) if corrector else None
    g = torch.Generator(device=device).manual_seed(seed)
    (out / "log.jsonl").unlink(missing_ok=True)  # a rerun starts its log afresh
    images, nfe, t0 = [], 0, time.perf_counter()
    n_batches = -(-sc.n_samples // sc.batch_size)
    for b in tqdm(range(n_batches), desc=f"sample {steps} steps", disable=None):
        n = min(sc.batch_size, sc.n_samples - b * sc.batch_size)
        noise = torch.randn((n, *model.sample_shape), generator=g, device=device)
        if corrector is None:  # the base sampler alone, with the configured solver
            x, nfe = solve_flow(model.velocity, noise, sigmas, sc.solver)
            nfe_c = 0
        else:  # INC inverts the Euler map, so its base sampler is Euler (checked in config)
            x, nfe_c, nfe = inc_sample(corrector.velocity, model.velocity, noise, c_sigmas, sigmas)
        images.append((model.decode(x) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
        records.append_jsonl(
            out / "log.jsonl",
            {"batch": b, "images": n, "nfe": nfe + nfe_c, "elapsed_s": time.perf_counter() - t0},
        )
    wall = time.perf_counter() - t0
    images = torch.cat(images).numpy()
    example = torch.zeros((2, *model.sample_shape), device=device)

    def flops(m):
        return flops_per_sample(
            lambda z: m.velocity(z, torch.full((len(z),), 0.5, device=device)), example
        )

    per_call = flops(model)
    per_call_c = flops(corrector) if corrector else 0
    partial = out / "samples.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
    write_png_folder(partial, images)
    records.write_jsonl_rows(out / "conditions.jsonl", [{"index": i} for i in range(len(images))])
    if (out / "samples").exists():  # a rerun replaces the old samples whole
        shutil.rmtree(out / "samples")
    partial.replace(out / "samples")
    records.save_image_grid(out / "grid.png", images[:64])
    metrics = {
        "task": "unconditional",
        "method": "inc" if corrector else "base",
        "solver": sc.solver,
        "steps": steps,
        "corrector_steps": corrector_steps if corrector else 0,
        "seed": seed,
        "n_samples": len(images),
        "nfe": nfe + nfe_c,
        "flops_per_nfe": per_call,
        "corrector_flops_per_nfe": per_call_c,
        "flops_per_image": per_call * nfe + per_call_c * nfe_c,
        "wall_s": wall,
        "wall_s_per_image": wall / len(images),
        "params": sum(p.numel() for p in model.network.parameters()),
        "corrector_params": sum(p.numel() for p in corrector.network.parameters())
        if corrector
        else 0,
        "device": device,
        "versions": records.versions(),
    }
    records.write_json(out / "config.json", to_dict(cfg))
    records.write_json(out / "metrics.json", metrics)
    return metrics


def aggregate(task_dir: Path, table: Path, figure: Path, profile: str) -> None:
    """tables/unconditional.{csv,md} and the FID-against-FLOPs figure. The real-data floor
    (FID of a training subset against the test set) is read from task_dir/real_data_eval.json."""

    from graftbench.aggregate import collect, provenance, summarise, write_table

    runs = collect(task_dir)
    runs = runs[runs["method"] == "base"]  # base + INC runs have their own table (inc)
    fid_cols = sorted(c for c in runs.columns if c.startswith("fid.") and not c.startswith("fid_"))
    floor, floor_notes = real_data_floor(task_dir, fid_cols)
    summary = summarise(
        runs,
        ["method", "solver", "steps"],
        ["nfe", "flops_per_image", *fid_cols, "wall_s_per_image"],
    )
    notes = [
        f"profile: {profile}; FID of {int(runs['n_samples'].iloc[0])} samples against the "
        f"{int(runs['n_reference'].iloc[0])} held-out test images (never trained on)",
        f"FID back-ends: {', '.join(c[4:] for c in fid_cols)} (trained-cnn is a classifier "
        "trained by the workflow on the training split: not comparable with published Inception FIDs)",
        "mean ± 95% CI (Student t) over sampling seeds of one pre-trained model; every seed "
        "starts all step counts from the same noise",
        f"FLOPs: torch FlopCounterMode, per network evaluation x NFE; device {runs['device'].iloc[0]}",
        f"versions: {provenance(runs)}",
    ]
    write_table(summary, table, "Unconditional generation: FID against FLOPs", notes + floor_notes)
    plot_fid_vs_flops(summary, floor, fid_cols, figure)


def real_data_floor(task_dir: Path, fid_cols: list[str]):
    """(one-row frame of task_dir/real_data_eval.json, or empty; a table note per FID column):
    the FID of a training subset against the test set, below which no model's FID can go."""
    import pandas as pd

    path = task_dir / "real_data_eval.json"
    floor = pd.json_normalize([records.read_json(path)]) if path.exists() else pd.DataFrame()
    notes = [
        f"real-data floor ({col}): train subset vs test = {floor[col].iloc[0]:.3f}"
        for col in fid_cols
        if col in floor
    ]
    return floor, notes


def plot_fid_vs_flops(
    summary, floor, fid_cols, path: Path, title: str = "FID vs FLOPs (labels: steps)"
) -> None:
    """One panel per FID back-end: a line per (method, solver) of `summary`, labelled by
    its `steps` column, with the real-data floor as a dashed line."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fid_cols), figsize=(5 * len(fid_cols), 3.8), squeeze=False)
    for ax, col in zip(axes[0], fid_cols, strict=True):
        for (method, solver), sub in summary.groupby(["method", "solver"]):
            sub = sub.sort_values("flops_per_image_mean")
            ax.errorbar(
                sub["flops_per_image_mean"],
                sub[f"{col}_mean"],
                yerr=sub[f"{col}_ci95"],
                marker="o",
                capsize=3,
                label=f"{method} ({solver})",
            )
            for _, r in sub.iterrows():
                ax.annotate(
                    f"{int(r['steps'])}",
                    (r["flops_per_image_mean"], r[f"{col}_mean"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        if col in floor:
            ax.axhline(floor[col].iloc[0], color="grey", ls="--", label="real data (floor)")
        ax.set_xscale("log")
        ax.set_yscale("log")  # FID spans orders of magnitude between 1 and many steps
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("FLOPs per image")
        ax.set_ylabel(f"FID ({col[4:]})")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with records.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
