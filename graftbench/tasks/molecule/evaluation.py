"""The molecule task's side of a fine-tuning run (`finetuning.task.Session`): the one
condition and rdkit reward, the evaluation of fresh samples (validity, uniqueness, novelty
against the training molecules, reward, QED, SA, internal diversity, FCD against the test
molecules), the drift from the base run, and the files.

Generation is unconditional: every group of M samples in the loop shares the one condition
"molecule", so GRAFT's top-K acts within groups of M and DDPO's per-prompt statistics are
running statistics of the whole model. The evaluation draws `evaluate.samples` fresh
molecules with the same random numbers per seed for every method (P-GRAFT stitched at N_I);
none of them is a sample the loop scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from graftbench import records
from graftbench.config import InputError
from graftbench.finetuning.build import sample_final
from graftbench.finetuning.task import Evaluation, base_samples
from graftbench.tasks.molecule.config import CONDITION, MoleculeConfig, MoleculeEvaluateConfig
from graftbench.tasks.molecule.splits import load_split, molecule_metrics, reward_fn


def sample_tokens(
    segments,
    model,
    n: int,
    ev: MoleculeEvaluateConfig,
    seed: int,
    best_of: int = 1,
    reward=None,
) -> torch.Tensor:
    """(n, L) final token states from the evaluation sampler (P-GRAFT: fine-tuned down to
    N_I, base after; best_of, reward: the best of that many draws, as `sample_final`)."""
    final = sample_final(
        model,
        segments,
        [CONDITION] * n,
        num_steps=ev.num_steps,
        batch=ev.batch_size,
        seed=seed,
        scheduler="masked",
        best_of=best_of,
        reward=reward,
        conditions=[CONDITION] * n,
    )
    return final.cpu()


def draw_grid(smiles: list[str], path: Path, ncol: int = 8) -> None:
    """The valid molecules among `smiles` drawn by rdkit in a grid (invalid ones left out)."""
    from rdkit.Chem import Draw

    from graftbench.tasks.molecule.data import parse

    mols = [m for m in map(parse, smiles) if m is not None] or [parse("C")]
    image = Draw.MolsToGridImage(mols, molsPerRow=ncol, subImgSize=(160, 160))
    with records.atomic_path(path) as tmp:
        image.save(tmp, format="png")


@dataclass
class MoleculeEvaluation(Evaluation):
    tokens: np.ndarray | None = None  # (n, L) the sampled token states
    smiles: list[str] = field(default_factory=list)  # their SMILES


class MoleculeSession:
    """One molecule run: the training molecules and the FCD reference statistics, loaded
    once."""

    evaluator = None

    def __init__(self, cfg: MoleculeConfig, data_dir: Path, device: str, base: Path | None):
        from graftbench.tasks.molecule.metrics import FCDStats

        if base is not None and not (base / "tokens.npz").is_file():
            raise InputError(f"{base / 'tokens.npz'}: missing; run the base evaluation first")
        self.cfg, self.device, self.base = cfg, device, base
        self.train = load_split(data_dir, "train")
        ref = data_dir / "fcd_test.npz"
        if cfg.evaluate.fcd and not ref.exists():
            raise InputError(f"{ref}: missing; rerun prepare-data with evaluate.fcd true")
        self.fcd_ref = FCDStats.load(ref) if cfg.evaluate.fcd else None
        self.conditions = [CONDITION]

    def model_input(self, condition: str) -> str:
        return condition

    @staticmethod
    def dedup_key(smiles: str):
        """De-duplication compares molecules, not strings: two SMILES of one graph are copies."""
        from graftbench.tasks.molecule.data import canonical

        return canonical(smiles) or smiles

    def reward(self):
        return reward_fn(self.cfg)

    def evaluate(self, segments, model, seed: int, best_of: int = 1) -> MoleculeEvaluation:
        """Metrics of `evaluate.samples` fresh molecules, their token states and SMILES."""
        from graftbench.tasks.molecule.metrics import fcd_from_stats

        ev = self.cfg.evaluate
        tokens = sample_tokens(
            segments, model, ev.samples, ev, seed + ev.seed_offset, best_of, self.reward()
        )
        smiles = model.decode(tokens)
        out = molecule_metrics(smiles, self.train, self.cfg)
        if self.fcd_ref is not None:
            out["fcd"] = fcd_from_stats(smiles, self.fcd_ref, self.device)
        return MoleculeEvaluation(out, tokens.numpy(), smiles)

    def curve(self, segments, model, seed: int, best_of: int = 1) -> float:
        """Mean reward (invalid = 0) of the first `curve_samples` evaluation molecules."""
        ev = self.cfg.evaluate
        tokens = sample_tokens(
            segments, model, ev.curve_samples, ev, seed + ev.seed_offset, best_of, self.reward()
        )
        return float(np.mean(reward_fn(self.cfg)(model.decode(tokens), None)))

    def compare(self, ev: MoleculeEvaluation) -> dict:
        """drift: the share of token positions that differ from the base's samples drawn with
        the same random numbers."""
        if self.base is None:
            return {"drift": 0.0}
        base = base_samples(self.base, "tokens.npz", "tokens", ev.tokens)
        return {"drift": float((ev.tokens != base).mean())}

    def write(self, out: Path, ev: MoleculeEvaluation) -> None:
        """tokens.npz, samples.tsv (SMILES with their reward) and grid.png."""
        from graftbench.tasks.molecule.data import write_smiles
        from graftbench.tasks.molecule.metrics import score

        with records.atomic_path(out / "tokens.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, tokens=ev.tokens)
        reward = self.cfg.reward
        write_smiles(out / "samples.tsv", ev.smiles, {reward: score(ev.smiles, reward).values})
        draw_grid(ev.smiles[:32], out / "grid.png")

    def close(self) -> None:
        pass
