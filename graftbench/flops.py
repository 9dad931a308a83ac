"""FLOPs measured by torch's own counter (torch.utils.flop_counter.FlopCounterMode).

It counts matmul/conv/attention FLOPs (2 per multiply-add) of the ops that actually run, which
is what nanoGPT's hand formula approximates; elementwise ops (norms, activations) are not
counted, as in every FLOP figure papers quote.

torch's counter has no formula for some fused kernels, and counts them as nothing:
`nn.TransformerEncoderLayer`'s fast path in eval mode under no_grad
(`aten._transformer_encoder_layer_fwd`), `nn.MultiheadAttention`'s
(`aten._native_multi_head_attention`), and CPU's flash attention, which
`F.scaled_dot_product_attention` runs on CPU (`aten._scaled_dot_product_flash_attention_for_cpu`
and its backward). `counter()` adds formulas for them, so a model counts the same in train and
eval mode and on CPU and CUDA, and the counted run is the run itself (nothing is switched to a
slower path while counting, so counted samples equal uncounted ones).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _encoder_layer_flop(src, embed_dim, num_heads, qkv_weight, *args, out_shape=None, **kw) -> int:
    """One fused encoder layer on src (batch, length, d): the qkv, output and two feed-forward
    projections of every token, and the two attention matmuls (QK^T and AV) of every head."""
    *batch, length, d = src
    ffn = args[10][0]  # ffn_weight_1: (ffn, d)
    tokens = prod(batch) * length
    projections = tokens * (3 * d * d + d * d + 2 * d * ffn)
    attention = 2 * prod(batch) * length * length * d
    return 2 * (projections + attention)


def _native_mha_flop(query, key, value, embed_dim, num_heads, *args, out_shape=None, **kw) -> int:
    """Fused multi-head attention: q, k, v and output projections plus the two attention matmuls."""
    *batch, n_q, d = query
    n_k = key[-2]
    b = prod(batch)
    projections = b * (2 * n_q * d * d + 2 * n_k * d * d)
    attention = 2 * b * n_q * n_k * d
    return 2 * (projections + attention)


def _cpu_flash_flop(query, key, value, *args, out_shape=None, **kw) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kw) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


MISSING_FORMULAS = {
    aten._transformer_encoder_layer_fwd: _encoder_layer_flop,
    aten._native_multi_head_attention: _native_mha_flop,
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flop,
}


def counter() -> FlopCounterMode:
    """torch's FlopCounterMode with the formulas it lacks (above); use as a context manager and
    read `get_total_flops()` after."""
    return FlopCounterMode(display=False, custom_mapping=MISSING_FORMULAS)


@torch.no_grad()
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn()` (forward only)."""
    with counter() as c:
        fn()
    return int(c.get_total_flops())


def flops_per_sample(network_call: Callable[[torch.Tensor], object], example: torch.Tensor) -> int:
    """FLOPs of one network evaluation for one sample: measured on `example` (batch, ...) and
    divided by the batch size. Multiply by the NFE of a sampler to get FLOPs per image."""
    return count_flops(lambda: network_call(example)) // example.shape[0]
