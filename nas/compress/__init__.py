"""Compression of a trained model into what ships: structured pruning and INT8 post-training quantization."""

from nas.compress.prune import build_model, load_model, plan_channels, prune_to_channels
from nas.compress.quantize import quantize_int8

__all__ = ["build_model", "load_model", "plan_channels", "prune_to_channels", "quantize_int8"]
