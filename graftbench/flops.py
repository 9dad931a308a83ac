"""FLOPs measured by torch's own counter (torch.utils.flop_counter.FlopCounterMode).

It counts matmul/conv/attention FLOPs (2 per multiply-add) of the ops that actually run, which
is what nanoGPT's hand formula approximates; elementwise ops (norms, activations) are not
counted, as in every FLOP figure papers quote.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn()` (forward only)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_per_sample(network_call: Callable[[torch.Tensor], object], example: torch.Tensor) -> int:
    """FLOPs of one network evaluation for one sample: measured on `example` (batch, ...) and
    divided by the batch size. Multiply by the NFE of a sampler to get FLOPs per image."""
    return count_flops(lambda: network_call(example)) // example.shape[0]
