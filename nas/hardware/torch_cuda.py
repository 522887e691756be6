"""PyTorch on a local NVIDIA GPU: the `nvidia-gpu` profile's backend where TensorRT is absent (settled point 4).

It times the PyTorch module itself (fp32, or fp16 with `.half()`), captured in a CUDA graph where the model allows
it, so launch overhead is what a graph-launched deployment pays; CUDA events around each synchronised run give the
times. A model that cannot be captured is timed eagerly, and the record says which.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, TrialError
from nas.hardware._backend import BACKENDS, LatencyBackend
from nas.hardware._measurement import Measurement, summarize
from nas.hardware._profile import HardwareProfile
from nas.hardware.onnxruntime_cpu import device_lock
from nas.spec import Precision

TORCH_CUDA_PRECISIONS = ("fp32", "fp16")


class TorchCUDA(LatencyBackend):
    name = "torch-cuda"
    precisions = TORCH_CUDA_PRECISIONS
    needs_model = True

    @classmethod
    def unavailable(cls, profile: HardwareProfile) -> str | None:
        import torch

        return None if torch.cuda.is_available() else "PyTorch sees no CUDA device on this machine"

    def measure(
        self, onnx_path: Path, *, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...],
        model: Any = None,
    ) -> Measurement:
        import torch

        self.check_precision(profile, precision)
        if model is None:
            raise TrialError("the torch-cuda backend times the PyTorch model, and none was given")
        reason = self.unavailable(profile)
        if reason:
            raise ConfigError(f"profile {profile.name!r} measures with torch-cuda, but {reason}")
        dtype = torch.float16 if precision == "fp16" else torch.float32
        module = copy.deepcopy(model).eval().to("cuda", dtype)
        device = torch.cuda.get_device_name()
        with device_lock(device), torch.inference_mode():
            torch.cuda.reset_peak_memory_stats()
            run, graphed = _runner(module, torch.zeros(profile.batch, *input_shape, device="cuda", dtype=dtype))
            times, seconds = time_cuda_runs(run, profile)
            peak_mb = torch.cuda.max_memory_allocated() / 2**20
            batch_run, _ = _runner(module, torch.zeros(profile.throughput_batch, *input_shape, device="cuda",
                                                       dtype=dtype))
            batch_times, _ = time_cuda_runs(batch_run, profile, throughput=True)
        return Measurement(
            **summarize(np.asarray(times)), seconds=seconds,
            throughput_ips=profile.throughput_batch / (float(np.median(batch_times)) / 1000),
            throughput_batch=profile.throughput_batch, peak_memory_mb=peak_mb,
            model_bytes=sum(p.numel() * p.element_size() for p in module.parameters()), backend=self.name,
            runtime_version=f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
                            + ("CUDA graph" if graphed else "eager (not capturable as a CUDA graph)"),
            device=device, precision=precision, batch=profile.batch, threads=None, method="measured",
            load_avg=os.getloadavg()[0],
        )


def _runner(module: Any, example: Any) -> tuple[Any, bool]:
    """A zero-argument callable running one batch: a replayed CUDA graph, or the eager module when capture fails."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as graph capture requires
        for _ in range(3):
            module(example)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            module(example)
    except Exception:  # data-dependent control flow or unsupported ops: time it eagerly instead
        torch.cuda.synchronize()
        return (lambda: module(example)), False
    return graph.replay, True


def time_cuda_runs(run: Any, profile: HardwareProfile, throughput: bool = False) -> tuple[list[float], float]:
    """Warm up, then time synchronised runs with CUDA events until the protocol's count and time are reached."""
    import torch

    p = profile.protocol
    min_runs, min_seconds = (p.throughput_min_runs, p.throughput_min_seconds) if throughput else (p.min_runs,
                                                                                                  p.min_seconds)
    started = time.perf_counter()
    for _ in range(p.warmup_runs):
        run()
    while time.perf_counter() - started < p.warmup_s:
        run()
    torch.cuda.synchronize()
    times: list[float] = []
    begin = time.perf_counter()
    while True:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        elapsed = time.perf_counter() - begin
        if (len(times) >= min_runs and elapsed >= min_seconds) or elapsed >= p.max_seconds:
            return times, elapsed


BACKENDS.register(TorchCUDA.name, TorchCUDA)
