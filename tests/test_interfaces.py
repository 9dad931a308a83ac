"""Every model adapter the methods fine-tune and every fine-tuning task has what the methods and the runner call:
the `FinetuneModel` and `FinetuneTask` Protocols, checked on real instances (a member missing
from a new adapter fails here, not in the middle of a run). The pixel flow model is sampled
and corrected (INC), never fine-tuned by a reward, so it is not one."""

from __future__ import annotations

import pytest

from graftbench import tasks
from graftbench.config import parse
from graftbench.finetuning.task import FinetuneTask
from graftbench.models.base import FinetuneModel


def adapters():
    from graftbench.tasks.layout.model import LayoutAdapter, LayoutModelConfig
    from graftbench.tasks.molecule.model import MoleculeAdapter, MoleculeModelConfig
    from graftbench.tasks.molecule.tokens import Vocabulary
    from graftbench.tasks.t2i.model import Text2ImageAdapter
    from graftbench.tasks.t2i.model_config import Text2ImageConfig
    from graftbench.tasks.toy2d.config import MLPConfig
    from graftbench.tasks.toy2d.model import Toy2dAdapter
    from tests.test_text2image import TINY

    vocab = Vocabulary.from_smiles(["CCO", "c1ccccc1"], "selfies")
    return {
        "t2i": Text2ImageAdapter.from_config(parse(Text2ImageConfig, TINY, "model")),
        "layout": LayoutAdapter(LayoutModelConfig(width=16, layers=1, heads=2)),
        "molecule": MoleculeAdapter(
            MoleculeModelConfig(length=8, width=16, layers=1, heads=2), vocab
        ),
        "toy2d": Toy2dAdapter(MLPConfig(width=8, depth=1, time_dim=4)),
    }


def test_every_adapter_is_a_finetune_model():
    built = adapters()
    members = {*FinetuneModel.__annotations__, *(n for n in vars(FinetuneModel) if n[0] != "_")}
    missing = {
        name: sorted(m for m in members if not hasattr(model, m)) for name, model in built.items()
    }
    assert all(isinstance(m, FinetuneModel) for m in built.values()), missing


@pytest.mark.parametrize("name", ["t2i", "layout", "molecule", "toy2d"])
def test_every_fine_tuning_task_is_a_finetune_task(name):
    task = tasks.get(name)
    assert isinstance(task.finetune, FinetuneTask)
    assert {"evaluate-model", "finetune", "aggregate"} <= set(task.verbs)


def test_the_unconditional_task_offers_no_finetuning():
    assert tasks.get("unconditional").finetune is None
