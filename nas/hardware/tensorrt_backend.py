"""TensorRT on a local NVIDIA GPU or Jetson: builds an engine from the ONNX file and times it (settled point 4).

Used where TensorRT imports (a Jetson, a workstation); elsewhere a search on a TensorRT profile reaches the device
through `nas agent`, or estimates with `--allow-estimate`. Timing follows trtexec: warm-up, then synchronised runs
until both a minimum count and a minimum time are reached, timed with CUDA events through PyTorch's CUDA runtime.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError
from nas.hardware._backend import BACKENDS, LatencyBackend
from nas.hardware._measurement import Measurement, summarize
from nas.hardware._profile import HardwareProfile
from nas.hardware.onnxruntime_cpu import device_lock
from nas.hardware.device_info import local_device_info
from nas.hardware.tensorrt_engine import build_engine, import_tensorrt
from nas.hardware.torch_cuda import time_cuda_runs
from nas.spec import Precision


class TensorRT(LatencyBackend):
    name = "tensorrt"

    @classmethod
    def unavailable(cls, profile: HardwareProfile) -> str | None:
        try:
            import tensorrt  # noqa: F401
            import torch
        except ImportError:
            return "TensorRT is not installed here"
        if not torch.cuda.is_available():
            return "there is no CUDA device here"
        name = local_device_info()["device"]  # a Jetson's board name; torch only says "Orin"
        if profile.device_match and profile.device_match.lower() not in name.lower():
            return f"this GPU is {name!r}, not a {profile.device_match!r}"
        return None

    def measure(
        self, onnx_path: Path, *, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...],
        model: Any = None,
    ) -> Measurement:
        self.check_precision(profile, precision)
        reason = self.unavailable(profile)
        if reason:
            raise ConfigError(f"profile {profile.name!r} measures with TensorRT, but {reason}")
        trt = import_tensorrt()
        import torch

        with tempfile.TemporaryDirectory(prefix="nas-trt-") as tmp:
            engine_path = Path(tmp) / "model.engine"
            built = build_engine(onnx_path, engine_path, precision=precision, input_shape=input_shape,
                                 max_batch=max(profile.batch, profile.throughput_batch))
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        context = engine.create_execution_context()
        device = local_device_info()["device"]
        with device_lock(device):
            torch.cuda.reset_peak_memory_stats()
            run = _bind(engine, context, profile.batch, input_shape)
            times, seconds = time_cuda_runs(run, profile)
            batch_times, _ = time_cuda_runs(_bind(engine, context, profile.throughput_batch, input_shape), profile, True)
        return Measurement(
            **summarize(np.asarray(times)), seconds=seconds,
            throughput_ips=profile.throughput_batch / (float(np.median(batch_times)) / 1000),
            throughput_batch=profile.throughput_batch,
            peak_memory_mb=(engine.device_memory_size + torch.cuda.max_memory_allocated()) / 2**20,
            model_bytes=Path(onnx_path).stat().st_size, backend=self.name,
            runtime_version=f"TensorRT {trt.__version__}", device=device, precision=precision, batch=profile.batch,
            threads=None, method="measured", load_avg=0.0, build_seconds=built["build_seconds"],
        )


def _bind(engine: Any, context: Any, batch: int, input_shape: tuple[int, ...]) -> Any:
    """Device buffers for every I/O tensor at `batch`, and a callable that enqueues one inference."""
    import torch

    stream = torch.cuda.current_stream()
    buffers = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name).name == "INPUT":
            context.set_input_shape(name, (batch, *input_shape))
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(context.get_tensor_shape(name))
        buffer = torch.zeros(shape, device="cuda", dtype=torch.float32)
        buffers.append(buffer)
        context.set_tensor_address(name, buffer.data_ptr())
    return lambda: context.execute_async_v3(stream.cuda_stream)


BACKENDS.register(TensorRT.name, TensorRT)
