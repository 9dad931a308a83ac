"""The molecule task's runs: sampling, the evaluator, and the verbs the workflow calls
(pretrain, evaluate_base, finetune); configs and data in `tasks.molecule`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from graftbench import records
from graftbench.config import InputError, to_dict
from graftbench.distributed import is_writer
from graftbench.tasks.molecule import (
    CONDITION,
    MoleculeConfig,
    MoleculeEvaluateConfig,
    load_split,
    molecule_metrics,
    reward_fn,
)


@torch.no_grad()
def sample_tokens(segments, model, n: int, ev: MoleculeEvaluateConfig, seed: int) -> torch.Tensor:
    """(n, L) final token states from the evaluation sampler; segments as in
    `loop.sample_segments` (P-GRAFT: fine-tuned down to N_I, base after)."""
    from graftbench.methods.loop import LoopConfig, sample_segments

    device = next(model.network.parameters()).device
    loop = LoopConfig(num_steps=ev.num_steps, sample_batch=ev.batch_size)
    g = torch.Generator(device=device).manual_seed(seed)
    return sample_segments(
        model, segments, model.scheduler("masked"), [CONDITION] * n, loop, g, keep={ev.num_steps}
    ).final.cpu()


class Evaluator:
    """Scores a model's fresh samples: validity, uniqueness, novelty against the training
    molecules, reward, QED, SA, internal diversity, and FCD against the test molecules.
    Loads the data and the FCD reference statistics once."""

    def __init__(self, cfg: MoleculeConfig, data_dir: Path, device: str = "cpu"):
        from graftbench.molecule.metrics import FCDStats

        self.cfg, self.device = cfg, device
        self.train = load_split(data_dir, "train")
        ref = data_dir / "fcd_test.npz"
        if cfg.evaluate.fcd and not ref.exists():
            raise InputError(f"{ref}: missing; rerun prepare-data with evaluate.fcd true")
        self.fcd_ref = FCDStats.load(ref) if cfg.evaluate.fcd else None

    def __call__(self, segments, model, seed: int) -> tuple[dict, np.ndarray, list[str]]:
        """Metrics, the sampled token states (n, L) and their SMILES."""
        from graftbench.molecule.metrics import fcd_from_stats

        ev = self.cfg.evaluate
        tokens = sample_tokens(segments, model, ev.samples, ev, seed + ev.seed_offset)
        smiles = model.decode(tokens)
        out = molecule_metrics(smiles, self.train, self.cfg)
        if self.fcd_ref is not None:
            out["fcd"] = fcd_from_stats(smiles, self.fcd_ref, self.device)
        return out, tokens.numpy(), smiles

    def curve(self, segments, model, seed: int) -> float:
        """Mean reward (invalid = 0) of the first `curve_samples` evaluation molecules."""
        ev = self.cfg.evaluate
        tokens = sample_tokens(segments, model, ev.curve_samples, ev, seed + ev.seed_offset)
        return float(np.mean(reward_fn(self.cfg)(model.decode(tokens), None)))


# ------------------------------------------------------------------------------------ verbs


def pretrain(
    cfg: MoleculeConfig, data_dir: Path, out: Path, log: Path | None = None, device: str = "cpu"
) -> None:
    """Pre-train the base on the training SMILES with the masked-diffusion loss, on
    `device`; the vocabulary is the training set's tokens (stored in the checkpoint's config)."""
    from graftbench.molecule.model import MoleculeAdapter
    from graftbench.molecule.tokens import Vocabulary
    from graftbench.train import fit

    torch.manual_seed(cfg.pretrain.seed)
    train = load_split(data_dir, "train")
    vocab = Vocabulary.from_smiles(train, cfg.model.representation)
    model = MoleculeAdapter(cfg.model, vocab)  # initialised on the CPU, then moved
    model.network.to(device)
    x0 = vocab.encode(train, cfg.model.length)

    def loss_fn(step: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(x0), (cfg.pretrain.batch_size,), generator=g)
        # the loss draws t and the mask on fit's CPU generator and moves them to x0's device
        return model.training_loss(x0[idx].to(device), None, g)

    config = {**to_dict(cfg), "model": to_dict(model.cfg), "vocab": vocab.to_dict()}
    fit(model.network, loss_fn, cfg.pretrain, out, config, log)


def _write_run(
    out: Path, metrics: dict, ev: dict, tokens: np.ndarray, smiles: list[str], cfg: MoleculeConfig
) -> None:
    from graftbench.molecule.data import write_smiles
    from graftbench.molecule.metrics import score

    with records.atomic_path(out / "tokens.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, tokens=tokens)
    write_smiles(out / "samples.tsv", smiles, {cfg.reward: score(smiles, cfg.reward).values})
    draw_grid(smiles[:32], out / "grid.png")
    records.write_json(out / "config.json", to_dict(cfg))
    records.write_json(out / "eval.json", ev)
    records.write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run


def draw_grid(smiles: list[str], path: Path, ncol: int = 8) -> None:
    """The valid molecules among `smiles` drawn by rdkit in a grid (invalid ones left out)."""
    from rdkit.Chem import Draw

    from graftbench.molecule.data import parse

    mols = [m for m in map(parse, smiles) if m is not None] or [parse("C")]
    image = Draw.MolsToGridImage(mols, molsPerRow=ncol, subImgSize=(160, 160))
    with records.atomic_path(path) as tmp:
        image.save(tmp, format="png")


def evaluate_base(
    cfg: MoleculeConfig, model_path: Path, data_dir: Path, seed: int, out: Path, device: str = "cpu"
) -> dict:
    """The pre-trained model, evaluated as every fine-tuned one is."""
    from graftbench.molecule.model import MoleculeAdapter
    from graftbench.tasks.finetuning import base_record, plain_factory

    t0 = time.perf_counter()
    model = MoleculeAdapter.load(model_path, device)
    evaluator = Evaluator(cfg, data_dir, device)
    segments = [(plain_factory(model), None)]
    ev, tokens, smiles = evaluator(segments, model, seed)
    ev["curve_reward"] = evaluator.curve(segments, model, seed)
    ev["drift"] = 0.0  # the reference the fine-tuned runs' drift is measured from
    metrics = base_record(seed, model.flops_per_call(), t0, device)
    _write_run(out, metrics, ev, tokens, smiles, cfg)
    return {**metrics, **ev}


def finetune(
    cfg: MoleculeConfig,
    model_path: Path,
    data_dir: Path,
    run: str,
    seed: int,
    base_tokens: Path,
    out: Path,
    device: str = "cpu",
) -> dict:
    """Fine-tune the pre-trained model with one method until the reward budget is spent (a
    curve point every `evaluate.curve_every` rounds); then evaluate it, and its drift from
    the base: the share of token positions that differ from the base's samples drawn with
    the same random numbers."""
    from graftbench.molecule.data import canonical
    from graftbench.molecule.model import MoleculeAdapter
    from graftbench.tasks.finetuning import (
        build_method,
        eval_segments,
        finish,
        run_record,
        run_with_curve,
    )

    t0 = time.perf_counter()
    model = MoleculeAdapter.load(model_path, device)
    evaluator = Evaluator(cfg, data_dir, device)
    # de-duplication compares molecules, not strings: two SMILES of one graph are copies
    method = build_method(cfg, "molecule", run, model, seed, dedup_key=lambda s: canonical(s) or s)
    segments, n_i = eval_segments(method, model)
    rows = run_with_curve(
        method,
        [CONDITION],
        reward_fn(cfg),
        lambda: evaluator.curve(segments, model, seed),
        cfg.evaluate.curve_every,
        out,
    )
    if not is_writer():  # the other ranks' models equal rank 0's: it evaluates, writes
        return {}
    train_s = time.perf_counter() - t0
    ev, tokens, smiles = evaluator(segments, model, seed)
    base = np.load(base_tokens)["tokens"]
    if base.shape != tokens.shape:
        raise InputError(
            f"{base_tokens}: base tokens {base.shape} do not match this run's "
            f"{tokens.shape}; rerun the base evaluation"
        )
    ev["drift"] = float((tokens != base).mean())
    ev["curve_reward"] = rows[-1]["curve_reward"]
    metrics = run_record(rows, run, seed, n_i, model.flops_per_call(), 1, t0, train_s, device)
    model.save(out / "model.pt", to_dict(cfg))
    _write_run(out, metrics, ev, tokens, smiles, cfg)
    finish(out)
    return {**metrics, **ev}
