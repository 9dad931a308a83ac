"""The unconditional task's verbs: data, the FID feature network, pre-training the
rectified-flow base and sampling it (with or without an INC corrector).

Data flow (one verb per workflow rule; inc.py has inverse noise correction's):
    prepare-data   -> data/train.npz, test/ (PNG, the FID reference), train_subset/
                      (the real-data floor)
    train-features -> features.pt (the "trained-cnn" FID back-end)
    pretrain       -> model.pt (EMA weights + config)
    sample         -> run folder: samples/ (PNG), conditions.jsonl, grid.png, metrics.json
    evaluate       -> the run folder's eval.json (FID; the shared `graftbench evaluate`)
    aggregate      -> tables/unconditional.{csv,md}, figures/unconditional_fid_vs_flops.png
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from graftbench import records
from graftbench.config import ConfigError, to_dict
from graftbench.metrics.feature_net import FEATURES_KIND, train_feature_net
from graftbench.models.config import UNetConfig
from graftbench.tasks.unconditional.config import UnconditionalConfig
from graftbench.tasks.unconditional.data import load_images, split, write_png_folder
from graftbench.train import fit

# checkpoint kinds (records.save_checkpoint): what each file is, checked where it is loaded;
# features.pt is metrics.feature_net's FEATURES_KIND
MODEL_KIND = "unconditional model"  # model.pt, the pre-trained base
CORRECTOR_KIND = "inc corrector"  # inc/corrector_{steps}.pt (a flow model too, not a base)

# diffusers takes ~8 s to import: the model, sampler and path modules are imported inside
# the functions that need them, so data, feature and aggregation jobs start fast.


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
        kind=FEATURES_KIND,
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

    fit(model.network, loss_fn, cfg.pretrain, out, to_dict(cfg), log, kind=MODEL_KIND)


def load_model(path: Path, device: str = "cpu", kind: str = MODEL_KIND):
    """The PixelFlowAdapter stored by `pretrain` (EMA weights; with kind=CORRECTOR_KIND:
    by `inc.train_corrector`), in eval mode on `device`."""
    from graftbench.config import parse
    from graftbench.models.pixel import PixelFlowAdapter

    ckpt = records.load_checkpoint(path, kind)
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
    corrector = load_model(corrector_path, device, CORRECTOR_KIND) if corrector_path else None
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
