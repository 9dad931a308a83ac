"""VQAScore (Lin et al., ECCV 2024) through t2v-metrics, as a graftbench scorer process.

Run it with the python of the environment that has t2v-metrics (README, "Paper scale");
graftbench starts it and talks to it over stdin/stdout (graftbench/tasks/t2i/scorer.py):

    /path/to/t2v-env/bin/python scorers/vqascore.py --model clip-flant5-xxl \
        --cache-dir /path/to/hf_cache --device cuda

Weights are read from --cache-dir only (HF_HUB_OFFLINE=1): put zhiqiulin/clip-flant5-xxl (and
what it builds on) there beforehand. The score of an image is P("Yes" | image, "Does this
figure show '{prompt}'?"), VQAScore's definition, in [0, 1].
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import refuse, serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="clip-flant5-xxl")
    parser.add_argument(
        "--cache-dir", required=True, help="local Hugging Face cache with the weights"
    )
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    # no downloads: a missing weight is an error naming the folder
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import t2v_metrics
    except ImportError as err:
        refuse(
            f"t2v-metrics is not installed for {sys.executable} ({err}); create its own "
            "environment and `pip install t2v-metrics` there (README, 'Paper scale')"
        )
    if not Path(args.cache_dir).is_dir():
        refuse(f"--cache-dir {args.cache_dir} is not a folder; put the {args.model} weights there")
    try:
        model = t2v_metrics.get_score_model(
            model=args.model, device=args.device, cache_dir=args.cache_dir
        )
    except Exception as err:
        refuse(
            f"cannot load {args.model} from {args.cache_dir} ({type(err).__name__}: {err}); "
            "download its weights into that folder on a machine with internet first"
        )

    def score(images, prompts):
        # t2v-metrics scores every image against every text; group images by prompt so each
        # call is one column rather than a (batch x batch) matrix
        by_prompt = defaultdict(list)
        for i, prompt in enumerate(prompts):
            by_prompt[prompt].append(i)
        out = [0.0] * len(images)
        for prompt, idx in by_prompt.items():
            column = model(images=[images[i] for i in idx], texts=[prompt])
            for k, i in enumerate(idx):
                out[i] = float(column[k][0])
        return out

    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("t2v-metrics")
    except PackageNotFoundError:  # a source checkout on sys.path
        installed = "unknown"
    serve(score, name=f"vqascore/{args.model}", version=installed)


if __name__ == "__main__":
    main()
