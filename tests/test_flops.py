"""FLOPs per call against an independent hand count, at the cpu profile's model sizes.

The hand count walks the network with forward hooks, not torch's counter: 2 x the
multiply-accumulates of every linear and convolution, plus, for every attention, QK^T and AV
(2 x 2 x batch x queries x keys x width). A `nn.TransformerEncoderLayer` is counted from its
weights as a whole (its fused eval-mode kernel calls none of its submodules). The counts agree
exactly; the tests allow 0.1%, which still catches the pixel UNet's uncounted CPU attention
(0.65% of its FLOPs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from graftbench import spec, tasks
from graftbench.finetuning.run_records import flops_per_call

ROOT = Path(__file__).resolve().parents[1]


def cpu_config(task: str):
    spec_file = yaml.safe_load((ROOT / f"tasks/{task}.yaml").read_text())
    return spec.resolve({"profile": "cpu", "tasks": [task], **spec_file}, task)


def hand_count(network: nn.Module, call) -> int:
    """Runs `call()` once and counts 2 x multiply-accumulates from the shapes the hooks see."""
    total = 0
    layers = [m for m in network.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    inside = {id(s) for layer in layers for s in layer.modules()}

    def linear(m, inputs, out):
        nonlocal total
        total += 2 * out.numel() * m.in_features

    def conv(m, inputs, out):
        nonlocal total
        total += 2 * out.numel() * (m.in_channels // m.groups) * m.weight[0, 0].numel()

    def encoder_layer(m, inputs, out):
        nonlocal total
        batch, length, d = inputs[0].shape
        ffn = m.linear1.out_features
        total += 2 * batch * length * (4 * d * d + 2 * d * ffn) + 2 * 2 * batch * length**2 * d

    def attention(m, args, kwargs, out):
        # diffusers' Attention: queries from hidden_states, keys from encoder_hidden_states
        nonlocal total
        hidden = args[0] if args else kwargs["hidden_states"]
        context = kwargs.get("encoder_hidden_states")
        n_q = hidden[0, 0].numel() if hidden.ndim == 4 else hidden.shape[1]
        n_k = n_q if context is None else context.shape[1]
        total += 2 * 2 * hidden.shape[0] * n_q * n_k * m.to_q.out_features

    from diffusers.models.attention_processor import Attention

    hooks = []
    for m in network.modules():
        if id(m) in inside and not isinstance(m, nn.TransformerEncoderLayer):
            continue
        if isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.TransformerEncoderLayer):
            hooks.append(m.register_forward_hook(encoder_layer))
        elif isinstance(m, Attention):
            hooks.append(m.register_forward_hook(attention, with_kwargs=True))
    with torch.no_grad():
        call()
    for h in hooks:
        h.remove()
    return total


def _adapter(task: str):
    if task == "layout":
        from graftbench.tasks.layout.model import LayoutAdapter

        return LayoutAdapter(cpu_config(task).model)
    if task == "molecule":
        from graftbench.tasks.molecule.model import MoleculeAdapter
        from graftbench.tasks.molecule.tokens import Vocabulary

        cfg = cpu_config(task).model
        vocab = Vocabulary.from_smiles(["CCO", "c1ccccc1", "CC(=O)N"], cfg.representation)
        return MoleculeAdapter(cfg, vocab)
    from graftbench.tasks.t2i.model import Text2ImageAdapter

    return Text2ImageAdapter.from_config(cpu_config(task).model)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("task", ["layout", "molecule", "t2i"])
def test_flops_per_call_equal_a_hand_count(task, mode):
    torch.manual_seed(0)
    model, condition = _adapter(task), tasks.get(task).finetune.probe_condition
    getattr(model.network, mode)()
    counted = flops_per_call(model, condition)
    device = torch.device("cpu")
    x = model.initial_state(1, torch.Generator().manual_seed(0), device)
    cond = model.encode_condition([condition])
    t = torch.zeros(1, dtype=torch.long)
    hand = hand_count(model.network, lambda: model.denoise(x, t, cond))
    assert counted == pytest.approx(hand, rel=1e-3), (task, mode, counted, hand)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pixel_unet_flops_equal_a_hand_count(mode):
    from graftbench.flops import flops_per_sample
    from graftbench.models.pixel import PixelFlowAdapter

    model = PixelFlowAdapter.from_config(cpu_config("unconditional").model)
    getattr(model.network, mode)()
    x = torch.randn(2, *model.sample_shape)
    sigma = torch.full((2,), 0.5)
    counted = flops_per_sample(lambda batch: model.velocity(batch, sigma[: len(batch)]), x)
    hand = hand_count(model.network, lambda: model.velocity(x, sigma)) // 2
    assert counted == pytest.approx(hand, rel=1e-3), (mode, counted, hand)
