"""Where does inverse noise correction lose? Oracle and ablations on a finished INC run.

Reads <results>/<profile>/unconditional (model.pt, inc/invert_<steps>.pt, inc/corrector_<steps>.pt,
data/, features.pt) and prints trained-cnn FIDs against the test split for 1,000 images each:
    - the training images themselves (the floor for this set);
    - the oracle: the inverted noise of those images pushed back through the base, i.e. what a
      perfect corrector would reach if the inversion is accurate;
    - the base from N(0, I) noise;
    - base + the trained corrector at several corrector step counts, with the energy distance
      of its samples to the held-out inverted noise (the share the corrector never saw);
    - base + a per-pixel Gaussian fitted to the inverted noise (no network).
Usage: python benchmarks/inc_oracle.py [--results results] [--profile cpu] [--steps 8] [--seed 0]
With --n equal to the held-out count (inc.invert.holdout x inverted images) every image
scored is one the corrector never trained on (the held-out share is the first one).
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from graftbench import records
from graftbench.methods.inc import energy_distance
from graftbench.metrics.fid import fid, folder_features, load_backend, reference_features
from graftbench.sampling.flow import flow_sigmas, solve_flow
from graftbench.tasks.unconditional.data import write_png_folder
from graftbench.tasks.unconditional.inc import NOISE_KIND
from graftbench.tasks.unconditional.task import CORRECTOR_KIND, load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="the workflow's results folder")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--steps", type=int, default=8, help="base Euler steps (an inc.base_steps)")
    p.add_argument("--corrector-steps", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args()
    root = Path(args.results) / args.profile / "unconditional"
    model = load_model(root / "model.pt")
    corrector_path = root / f"inc/corrector_{args.steps}.pt"
    corrector = load_model(corrector_path, kind=CORRECTOR_KIND)
    z = records.load_checkpoint(root / f"inc/invert_{args.steps}.pt", NOISE_KIND)["noise"]
    holdout = records.checkpoint_header(corrector_path, CORRECTOR_KIND)["config"]["task"]
    held = z[: int(round(holdout["inc"]["invert"]["holdout"] * len(z)))]  # never trained on
    n = min(args.n, len(z))
    train = np.load(root / "data/train.npz")["images"][:n]  # the images invert used, in order
    x = torch.from_numpy(train).permute(0, 3, 1, 2).float() / 127.5 - 1
    backend = load_backend("trained-cnn", "cpu", str(root / "features.pt"))
    ref = reference_features(root / "data/test", backend, "cpu")

    def score(images: torch.Tensor) -> float:
        pixels = (model.decode(images) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            write_png_folder(Path(tmp) / "s", pixels)
            return fid(folder_features(Path(tmp) / "s", backend, "cpu"), ref)

    sigmas = flow_sigmas(args.steps)
    eps = torch.randn((n, *model.sample_shape), generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        back, _ = solve_flow(model.velocity, z[:n], sigmas)
        rms = (back - x).flatten(1).pow(2).mean(1).sqrt()
        q = torch.quantile(rms, torch.tensor([0.5, 0.9, 0.99, 1.0])).tolist()
        print(f"reconstruction RMS per image, quantiles 50/90/99/100%: {[round(v, 4) for v in q]}")
        print(f"FID, training images themselves:          {score(x):8.2f}")
        print(f"FID, oracle (base of inverted noise):      {score(back):8.2f}")
        print(
            f"FID, base from N(0, I):                    {score(solve_flow(model.velocity, eps, sigmas)[0]):8.2f}"
        )
        for cs in args.corrector_steps:
            zc, _ = solve_flow(corrector.velocity, eps, flow_sigmas(cs))
            e = energy_distance(zc[: len(held)], held)
            print(
                f"FID, base + corrector ({cs:3d} steps):       "
                f"{score(solve_flow(model.velocity, zc, sigmas)[0]):8.2f}   energy to held-out z {e:.4f}"
            )
        fitted = z.mean(0) + z.std(0) * eps
        print(
            f"FID, base + per-pixel Gaussian fit of z:   {score(solve_flow(model.velocity, fitted, sigmas)[0]):8.2f}"
        )


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))  # 1 on a shared machine
    main()
