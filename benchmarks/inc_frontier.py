"""The FID-FLOPs frontier of base vs base + INC on a finished unconditional run, with the
Inception FID computed only for the runs that decide it (Inception on 1,000 16x16 images
upsampled to 299x299 takes minutes per seed on one CPU thread; the workflow's trained-cnn FID
is already in every run's eval.json).

For each named run (a folder under <results>/<profile>/unconditional, e.g. base_euler32 or
inc_euler32_c64) and each seed, writes seed<k>/eval_inception.json (the `evaluate` verb's
output for the inception back-end; kept and reused when present), then prints a Markdown
table: sampler, NFE, FLOPs/image, FID inception and FID trained-cnn, mean ± 95% Student-t CI
over seeds, and with --paired-against the paired change of each run against that run at the
same seed (base and INC start from the same noise at a seed).
Usage: python benchmarks/inc_frontier.py --results results-inc --runs base_euler32 inc_euler32_c64 \
           [--inception base_euler32 inc_euler32_c64] [--paired-against base_euler32]
"""

import argparse
from pathlib import Path

import pandas as pd

from graftbench import records
from graftbench.aggregate import ci95


def _fmt(values: list[float]) -> str:
    if not values or any(v is None for v in values):
        return ""
    v = pd.Series(values, dtype=float)
    return f"{v.mean():.2f} ± {ci95(v):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def inception_fid(run_dir: Path, reference: Path) -> float:
    from graftbench.evaluate import evaluate_fid

    out = run_dir / "eval_inception.json"
    if not out.exists():
        # the cpu profile's 1,000 images are fewer than Inception's 2,048 dimensions: a
        # rank-deficient (biased) estimate, asked for explicitly and recorded as such
        fid = evaluate_fid(
            run_dir / "samples", reference, ["inception"], "cpu", allow_rank_deficient=True
        )
        records.write_json(out, fid)
    result = records.read_json(out)
    print(
        f"  {run_dir}: inception {result['fid']['inception']:.2f} "
        f"({result['eval_wall_s']['inception']:.0f} s)",
        flush=True,
    )
    return result["fid"]["inception"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--runs", nargs="+", required=True, help="run folders, in table order")
    p.add_argument("--inception", nargs="*", default=[], help="runs to score with Inception")
    p.add_argument(
        "--paired-against",
        help="a run every other run is paired with, per seed; list it in --runs before them",
    )
    args = p.parse_args()
    root = Path(args.results) / args.profile / "unconditional"
    fids: dict[str, dict[int, dict]] = {}
    rows = []
    for run in args.runs:
        fids[run] = {}
        for seed_dir in sorted((root / run).glob("seed*")):
            seed = int(seed_dir.name[4:])
            metrics = records.read_json(seed_dir / "metrics.json")
            fid = {"trained-cnn": records.read_json(seed_dir / "eval.json")["fid"]["trained-cnn"]}
            if run in args.inception:
                fid["inception"] = inception_fid(seed_dir, root / "data/test")
            fids[run][seed] = fid
        c = metrics.get("corrector_steps", 0) or 0
        rows.append(
            {
                "sampler": f"base {metrics['steps']}" + (f" + INC {c}" if c else ""),
                "NFE": metrics["nfe"],
                "FLOPs/image": f"{metrics['flops_per_image']:.3e}",
                "seeds": len(fids[run]),
                **{
                    f"FID {b}": _fmt([f.get(b) for f in fids[run].values()])
                    for b in ("inception", "trained-cnn")
                },
            }
        )
        if args.paired_against and run != args.paired_against:
            ref = fids[args.paired_against]
            for b in ("inception", "trained-cnn"):
                d = [
                    f[b] - ref[s][b] for s, f in fids[run].items() if b in f and b in ref.get(s, {})
                ]
                rows[-1][f"Δ {b} vs {args.paired_against}"] = _fmt(d)
    print(pd.DataFrame(rows).fillna("").to_markdown(index=False))


if __name__ == "__main__":
    main()
