"""The training loop: resume after an interruption gives the weights of an unbroken run."""

from __future__ import annotations

import pytest
import torch

from graftbench import records
from graftbench.train import TrainConfig, fit

CFG = TrainConfig(
    steps=8, batch_size=4, lr=1e-2, warmup=2, ema_decay=0.9, checkpoint_every=3, seed=3
)


def make():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    target = torch.randn(100, 3)

    def loss(step, g):  # draws its batch and noise from the loop's generator
        x = target[torch.randint(100, (CFG.batch_size,), generator=g)]
        noisy = x + 0.1 * torch.randn(x.shape, generator=g)
        return ((net(noisy).squeeze(1) - x.sum(1)) ** 2).mean()

    return net, loss


def crash_at(step: int, loss):
    """loss, but interrupted (as by Ctrl-C) when fit asks for `step` (7: after the
    checkpoint at step 6 of CFG)."""

    def crashing(s, g):
        if s == step:
            raise KeyboardInterrupt
        return loss(s, g)

    return crashing


def test_resume_matches_unbroken_run(tmp_path):
    net, loss = make()
    fit(net, loss, CFG, tmp_path / "full.pt", {"run": "full"}, kind="test")

    net, loss = make()
    with pytest.raises(KeyboardInterrupt):
        fit(net, crash_at(7, loss), CFG, tmp_path / "resumed.pt", {"run": "resumed"}, kind="test")
    assert (tmp_path / "resumed.pt.partial").exists() and not (tmp_path / "resumed.pt").exists()
    net, loss = make()  # a new process: fresh weights, resumed from the partial checkpoint
    fit(net, loss, CFG, tmp_path / "resumed.pt", {"run": "resumed"}, kind="test")
    assert not (tmp_path / "resumed.pt.partial").exists()
    a = records.load_checkpoint(tmp_path / "full.pt")
    b = records.load_checkpoint(tmp_path / "resumed.pt")
    assert b["config"] == {"run": "resumed"}
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)


def test_non_finite_loss_names_the_step(tmp_path):
    net, _ = make()

    def bad(step, g):
        return net(torch.ones(1, 3)).sum() * (float("nan") if step == 2 else 1.0)

    with pytest.raises(FloatingPointError, match="train step 2"):
        fit(net, bad, CFG, tmp_path / "x.pt", {}, kind="test")
