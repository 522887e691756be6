"""Parameter and multiply-accumulate counts (fvcore), reported beside measured latency, never instead of it."""

from __future__ import annotations

import logging

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """fvcore counts one multiply-accumulate per 'flop' for convolutions and linear layers."""
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, *input_shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())
