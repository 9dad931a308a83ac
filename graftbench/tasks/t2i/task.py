"""The text-to-image task's verbs: pre-training (or a reference to a Stable Diffusion folder),
loading a checkpoint, and the task as the fine-tuning runner sees it (`T2IFinetune`).

Data flow (one verb per workflow rule):
    pretrain       -> model.pt (EMA weights + config), pretrain.jsonl
    evaluate-model -> base/seed{n}/: eval.json, metrics.json, images.npz, grid.png
    finetune       -> {run}/seed{n}/: rounds.jsonl, model.pt, eval.json, metrics.json,
                      images.npz, grid.png; run is graft, ddpo or pgraft{N_I}
    aggregate      -> tables/t2i.{csv,md}; figures t2i_reward_vs_queries.png,
                      t2i_pgraft_vs_ni.png, t2i_samples.png

Every method fine-tunes the same pre-trained model on the training prompts, spending the same
number of verifier queries (`evaluation` says how runs are evaluated). P-GRAFT is evaluated
the way it samples: fine-tuned model down to t_I, base after.
"""

from __future__ import annotations

from pathlib import Path

import torch

from graftbench import records
from graftbench.config import to_dict
from graftbench.finetuning.task import RunInputs
from graftbench.tasks.t2i.config import T2IConfig
from graftbench.tasks.t2i.scenes import split_prompts

# diffusers and transformers take ~8 s to import: the model and sampler modules are imported
# inside the functions that need them, so aggregation starts fast.


def pretrain(cfg: T2IConfig, out: Path, log: Path | None = None, device: str = "cpu") -> None:
    """Pre-train the base on rendered scenes of every prompt of the grammar, held-out ones
    included: as SD's pre-training covers the concepts of the benchmarks it is fine-tuned
    for, the base has seen every combination, and the held-out prompts test whether what
    fine-tuning on the training prompts taught transfers to prompts it never saw.

    With `stable_diffusion` set there is nothing to pre-train: `out` becomes a reference to
    the folder (`stable_diffusion_base`)."""
    if cfg.stable_diffusion is not None:
        return stable_diffusion_base(cfg, out, log)
    from graftbench.tasks.t2i.model import KIND, Text2ImageAdapter
    from graftbench.tasks.t2i.pretrain import pretrain_loss
    from graftbench.train import fit

    torch.manual_seed(cfg.pretrain.seed)
    model = Text2ImageAdapter.from_config(cfg.model)  # initialised on the CPU, then moved
    # the loss renders and draws on the CPU; the adapter moves what it encodes to `device`
    model.network.to(device)
    split = split_prompts(cfg.scenes)
    loss = pretrain_loss(model, split.train + split.heldout, cfg.pretrain.batch_size)
    fit(model.network, loss, cfg.pretrain, out, to_dict(cfg), log, kind=KIND)


def stable_diffusion_base(cfg: T2IConfig, out: Path, log: Path | None = None) -> None:
    """Check the SD folder and write `out` as a checkpoint that loads it with no weights of its
    own (what `StableDiffusionAdapter.save` writes for an untrained model, without copying
    the folder's gigabytes), so every later rule loads the base the same way."""
    from graftbench.tasks.t2i.model import KIND
    from graftbench.tasks.t2i.stable_diffusion import check_folder

    folder = check_folder(cfg.stable_diffusion.path)
    records.save_checkpoint(
        out,
        {"model": {}, "lora": None},
        {**to_dict(cfg), "model": to_dict(cfg.stable_diffusion)},
        kind=KIND,
    )
    if log:
        records.append_jsonl(log, {"step": 0, "stable_diffusion": str(folder.resolve())})


def load_model(path: Path, device: str = "cpu"):
    """The model a t2i checkpoint holds: the small model, or SD (base reference or
    fine-tuned on top of its folder)."""
    from graftbench.tasks.t2i.model import KIND, Text2ImageAdapter

    if records.checkpoint_header(path, KIND)["config"].get("stable_diffusion"):
        from graftbench.tasks.t2i.stable_diffusion import StableDiffusionAdapter

        return StableDiffusionAdapter.load(path, device)
    return Text2ImageAdapter.load(path, device)


class T2IFinetune:
    """The t2i task as `finetuning.runner` sees it (`finetuning.task.FinetuneTask`)."""

    name = "t2i"
    inputs = ()  # the prompts come from the config (the scene grammar or a prompt set file)
    probe_condition = ""  # the empty prompt: FLOPs per UNet call do not depend on it

    def load_model(self, path: Path, device: str):
        return load_model(path, device)

    def open(self, cfg: T2IConfig, inputs: RunInputs, out: Path, device: str, base):
        from graftbench.tasks.t2i.evaluation import T2ISession

        return T2ISession(cfg, out, base)

    def describe(self, m: dict) -> str:
        # a scorer gives no accuracy
        acc = f" (accuracy {m['heldout_accuracy']:.3f})" if "heldout_accuracy" in m else ""
        return (
            f"{m['run']} seed {m['seed']}: held-out reward {m['heldout_reward']:.3f}{acc}, "
            f"training-prompt reward {m['train_reward']:.3f}, {m['reward_queries']} reward "
            f"queries, {m['wall_s']:.0f} s"
        )
