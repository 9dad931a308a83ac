"""A 2-D task where the answer is known: data from an 8-mode Gaussian ring (closed form), a
small MLP diffusion base pre-trained briefly on purpose (its error is measured against the data
law), and a smooth bump reward preferring the modes near one direction. Every GRAFT rule's
fine-tuned law is then known exactly (`targets`), so a run is scored by its distance to the
law it aims at, not only by the reward it reached. Beside the fine-tuning table: Var[r(x_0) |
x_t] along the sampler (`variance`, P-GRAFT's bias-variance argument) and inverse noise
correction on the same base (`inc`).

config, data, model: the task; targets: the exact target laws; evaluation: a fine-tuning run's
task side; variance, inc: the two analyses; table: the tables and figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

from graftbench import records
from graftbench.config import to_dict
from graftbench.finetuning.verbs import aggregate_verb, finetune_verbs
from graftbench.tasks import Task
from graftbench.tasks.toy2d.config import Toy2dConfig
from graftbench.tasks.toy2d.evaluation import Toy2dFinetune

log = logging.getLogger(__name__)


def _pretrain(cfg: Toy2dConfig, args) -> None:
    import torch

    from graftbench.tasks.toy2d.data import training_points
    from graftbench.tasks.toy2d.model import KIND, Toy2dAdapter
    from graftbench.train import fit_model

    torch.manual_seed(cfg.pretrain.seed)
    model = Toy2dAdapter(cfg.model)
    model.network.to(args.device)
    log = Path(args.log) if args.log else None
    points = training_points(cfg.data)
    fit_model(model, points, None, cfg.pretrain, args.out, to_dict(cfg), log, kind=KIND)


def _load(args):
    from graftbench.tasks.toy2d.model import Toy2dAdapter

    return Toy2dAdapter.load(args.model, args.device)


def _reward_variance(cfg: Toy2dConfig, args) -> None:
    from graftbench.tasks.toy2d.variance import reward_variance

    out = reward_variance(_load(args), cfg)
    records.write_json(Path(args.out), out)
    last = out["rows"][len(out["rows"]) // 2]
    log.info(
        f"Var[r] {out['reward_variance']:.4f}; at state {last['state']}: "
        f"{100 * last['share_of_variance']:.0f}% of it remains given x_t"
    )


def _inc_frontier(cfg: Toy2dConfig, args) -> None:
    from graftbench.tasks.toy2d.inc import frontier

    out = frontier(_load(args), cfg, args.seed)
    records.write_json(Path(args.out), out)
    for r in out["rows"]:
        log.info(
            f"{r['sampler']} {r['base_steps']}+{r['corrector_steps']}: energy "
            f"{r['energy']:.4f} (null {r['energy_null']:.4f}), {r['flops']:.3g} FLOPs"
        )


def _aggregate(results: Path, table: Path, figures: list[Path], profile: str) -> None:
    from graftbench.tasks.toy2d.table import aggregate

    aggregate(results, table, figures, profile)


def _aggregate_any(cfg, args) -> None:
    if args.inc:
        from graftbench.tasks.toy2d.table import inc_table

        inc_table(
            Path(args.results), Path(args.table), [Path(f) for f in args.figure], args.profile
        )
        return
    aggregate_verb(_aggregate, "toy2d")(cfg, args)


TASK = Task(
    name="toy2d",
    summary="2-D Gaussian ring with exact GRAFT target laws, Var[r | x_t] and INC",
    config=Toy2dConfig,
    verbs={
        "pretrain": _pretrain,
        **finetune_verbs(Toy2dFinetune()),
        "reward-variance": _reward_variance,
        "inc-frontier": _inc_frontier,
        "aggregate": _aggregate_any,
    },
    finetune=Toy2dFinetune(),
    config_keys={
        "pretrain": ("data", "model", "pretrain"),
        "evaluate": ("data", "reward", "evaluate"),
        "variance": ("data", "reward", "evaluate", "variance"),
        "inc": ("data", "evaluate", "inc"),
    },
    hints={"sample": "the toy2d task samples inside evaluate-model and inc-frontier"},
)
