"""Compression of a trained model into what ships: INT8 post-training quantization (more to come)."""

from nas.compress.quantize import quantize_int8

__all__ = ["quantize_int8"]
