"""The molecule task's verbs: pre-training the masked-diffusion base and the task as the
fine-tuning runner sees it (`MoleculeFinetune`).

Data flow (one verb per workflow rule):
    prepare-data   -> data/train.smi, data/test.smi (canonical SMILES), data/summary.json
    pretrain       -> model.pt (EMA weights, vocabulary + config), pretrain.jsonl
    evaluate-model -> base/seed{n}/: eval.json, metrics.json, samples.tsv, tokens.npz, grid.png
    finetune       -> {run}/seed{n}/: the same plus rounds.jsonl and model.pt; run is graft,
                      graft_dedup, ddpo or pgraft{N_I}
    aggregate      -> tables/molecule.{csv,md}; figures molecule_reward_vs_queries.png,
                      molecule_pgraft_vs_ni.png, molecule_samples.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from graftbench.config import to_dict
from graftbench.finetuning.task import RunInputs
from graftbench.tasks.molecule.config import CONDITION, MoleculeConfig
from graftbench.tasks.molecule.splits import load_split


def pretrain(
    cfg: MoleculeConfig, data_dir: Path, out: Path, log: Path | None = None, device: str = "cpu"
) -> None:
    """Pre-train the base on the training SMILES with the masked-diffusion loss, on
    `device`; the vocabulary is the training set's tokens (stored in the checkpoint's config)."""
    from graftbench.tasks.molecule.model import KIND, MoleculeAdapter
    from graftbench.tasks.molecule.tokens import Vocabulary
    from graftbench.train import fit_model

    torch.manual_seed(cfg.pretrain.seed)
    train = load_split(data_dir, "train")
    vocab = Vocabulary.from_smiles(train, cfg.model.representation)
    model = MoleculeAdapter(cfg.model, vocab)  # initialised on the CPU, then moved
    model.network.to(device)
    x0 = vocab.encode(train, cfg.model.length)

    config = {**to_dict(cfg), "model": to_dict(model.cfg), "vocab": vocab.to_dict()}
    fit_model(model, x0, None, cfg.pretrain, out, config, log, kind=KIND)


class MoleculeFinetune:
    """The molecule task as `finetuning.runner` sees it (`finetuning.task.FinetuneTask`)."""

    name = "molecule"
    inputs = ("data",)
    probe_condition = CONDITION

    def load_model(self, path: Path, device: str):
        from graftbench.tasks.molecule.model import MoleculeAdapter

        return MoleculeAdapter.load(path, device)

    def open(self, cfg: MoleculeConfig, inputs: RunInputs, out: Path, device: str, base):
        from graftbench.tasks.molecule.evaluation import MoleculeSession

        return MoleculeSession(cfg, inputs.data, device, base)

    def describe(self, m: dict) -> str:
        fcd = f", FCD {m['fcd']:.2f}" if "fcd" in m else ""
        return (
            f"{m['run']} seed {m['seed']}: reward {m['reward']:.3f} (validity "
            f"{m['validity']:.3f}, uniqueness {m['uniqueness']:.3f}, novelty "
            f"{m['novelty']:.3f}{fcd}), {m['reward_queries']} reward queries, {m['wall_s']:.0f} s"
        )
