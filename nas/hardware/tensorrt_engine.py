"""Building a TensorRT engine from an exported ONNX file, where TensorRT is installed (settled point 4).

TensorRT is an optional extra (`pip install 'nas[tensorrt]'` on a machine with an NVIDIA GPU), so it is imported
only when an engine is asked for. INT8 uses the scales already in a QDQ ONNX file (explicit quantization); FP16
lets TensorRT choose half-precision kernels. The engine is specific to the GPU and TensorRT version it was built
with, which the caller records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nas._io import atomic_write_bytes
from nas.errors import NasError

INSTALL_HINT = "pip install 'nas[tensorrt]' on a machine with an NVIDIA GPU"


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise NasError(f"TensorRT is not installed here ({exc}); {INSTALL_HINT}. Without it, --format onnx or int8 "
                       "ship a model for ONNX Runtime") from None
    return tensorrt


def build_engine(onnx_path: Path, out: Path, *, precision: str, input_shape: tuple[int, ...],
                 max_batch: int = 16) -> dict[str, Any]:
    """Serialise an engine for batches 1..`max_batch` (optimised for 1) to `out`; returns its provenance."""
    from nas.export import INPUT_NAME  # torch: only where an engine is built

    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise NasError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, *input_shape), (1, *input_shape), (max_batch, *input_shape))
    config.add_optimization_profile(profile)
    flag = {"fp16": "FP16", "int8": "INT8"}.get(precision)
    if flag and hasattr(trt.BuilderFlag, flag):  # TensorRT >= 11 types the network itself and drops the flags
        config.set_flag(getattr(trt.BuilderFlag, flag))
    # Kernel timings are kept across builds (and trials): most candidates share layer shapes, so later builds
    # skip most of the tactic search.
    cache_file = timing_cache_path(trt.__version__)
    timing_cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.exists() else b"")
    config.set_timing_cache(timing_cache, ignore_mismatch=True)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    build_seconds = time.monotonic() - started
    if serialized is None:
        raise NasError(f"TensorRT could not build a {precision} engine from {onnx_path} (see its log above)")
    atomic_write_bytes(out, bytes(serialized))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    return {"file": Path(out).name, "tensorrt_version": trt.__version__, "precision": precision,
            "batch": {"min": 1, "opt": 1, "max": max_batch}, "build_seconds": build_seconds}


def timing_cache_path(version: str) -> Path:
    """One timing cache per TensorRT version and GPU: timings from another GPU would mislead the builder."""
    import torch

    gpu = torch.cuda.get_device_name().replace(" ", "-") if torch.cuda.is_available() else "unknown-gpu"
    return Path.home() / ".cache" / "nas" / "tensorrt" / f"timing-{gpu}-trt{version}.cache"
