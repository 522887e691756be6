"""Times one model with a CPU runtime (ONNX Runtime or OpenVINO) in a fresh process (run as a script, `python -P
.../_timer.py`, so that it imports numpy and the runtime only, not torch through the nas package).

A separate process gives every model the same conditions (no training threads, no allocator state left over
from an earlier model) and an honest peak-memory figure: this process's resident high-water mark (VmHWM, which
exec resets, unlike ru_maxrss) minus what it used before the session was created. Both runtimes go through the
same protocol, threads and input, so their numbers compare. A short reference kernel is timed before and after
the model (after its sessions are gone), so the caller can tell whether other work took the cores meanwhile (nas.hardware.disturbance).
Reads a JSON request on stdin, writes a JSON result on stdout.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np

Run = Callable[[np.ndarray], object]


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _time_runs(run: Run, x: np.ndarray, min_runs: int, min_s: float, max_s: float) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        run(x)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - start
        if (len(times) >= min_runs and elapsed >= min_s) or elapsed >= max_s:
            return times


def time_reference(reference_onnx: str, threads: int, warmup_s: float = 0.05, min_s: float = 0.1,
                   min_runs: int = 15) -> float:
    """Mean milliseconds per run of the disturbance reference kernel with `threads` intra-op threads.

    Warmed up for `warmup_s` (a cold session read 10-40% slow), then timed for at least `min_s`: a mean over
    several scheduler periods says what share of the cores the kernel got, where a median of 1-ms runs can fall
    inside the one time slice a freshly woken process is granted ahead of busy neighbours."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(reference_onnx, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ones(session.get_inputs()[0].shape, np.float32)}
    warm_until = time.perf_counter() + warmup_s
    while time.perf_counter() < warm_until:
        session.run(None, feed)
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_s:
        session.run(None, feed)
        runs += 1
    return (time.perf_counter() - start) * 1000.0 / runs


def _onnxruntime(path: str, threads: int) -> tuple[Callable[[int], Run], bool, str]:
    """A runner per batch size, whether the batch axis is dynamic, and the runtime's version."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    dynamic = isinstance(spec.shape[0], str | type(None))
    return (lambda batch: lambda x: session.run(None, {spec.name: x})), dynamic, f"onnxruntime {ort.__version__}"


def _openvino(path: str, threads: int) -> tuple[Callable[[int], Run], bool, str]:
    """OpenVINO compiles one model per input shape; latency hint, one stream, the same thread count as ONNX
    Runtime."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    dynamic = model.inputs[0].get_partial_shape()[0].is_dynamic
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}

    def runner(batch: int) -> Run:
        shaped = model.clone()
        shape = list(shaped.inputs[0].get_partial_shape().get_min_shape())
        shaped.reshape({shaped.inputs[0]: [batch, *shape[1:]]})
        request = core.compile_model(shaped, "CPU", config).create_infer_request()
        return lambda x: request.infer({0: x})

    return runner, dynamic, f"OpenVINO {ov.__version__.split('-')[0]}"


RUNTIMES = {"onnxruntime": _onnxruntime, "openvino": _openvino}


def run(request: dict) -> dict:
    protocol = request["protocol"]
    threads = request["threads"]
    reference_before = time_reference(request["reference"], threads)
    baseline_rss = _status_bytes("VmRSS")
    runner, dynamic, version = RUNTIMES[request["runtime"]](request["model"], threads)
    rng = np.random.default_rng(0)

    def inputs(batch: int) -> np.ndarray:
        return rng.standard_normal((batch, *request["input_shape"])).astype(np.float32)

    x = inputs(request["batch"])
    call = runner(request["batch"])
    warm_until = time.perf_counter() + protocol["warmup_s"]
    for i in range(10_000):
        call(x)
        if i + 1 >= protocol["warmup_runs"] and time.perf_counter() >= warm_until:
            break
    load_avg = os.getloadavg()[0]
    started = time.perf_counter()
    times = _time_runs(call, x, protocol["min_runs"], protocol["min_seconds"], protocol["max_seconds"])
    seconds = time.perf_counter() - started
    throughput = None
    tb = request.get("throughput_batch")
    if tb and dynamic:  # only a dynamic batch axis takes another batch size
        big, big_call = inputs(tb), runner(tb)
        big_call(big)
        bt = _time_runs(big_call, big, protocol["throughput_min_runs"], protocol["throughput_min_seconds"],
                        protocol["max_seconds"])
        throughput = tb / (float(np.median(bt)) / 1000.0)
        del big_call
    # The model's sessions go first: their worker threads keep spinning after a run and read as someone else's
    # load (the reference ran 2.0-2.4x slow after a quiet ResNet-18 timing).
    del call, runner
    gc.collect()
    reference_after = time_reference(request["reference"], threads)
    peak = _status_bytes("VmHWM") - baseline_rss
    return {
        "times_ms": times,
        "seconds": seconds,
        "throughput_ips": throughput,
        "throughput_batch": tb if throughput else None,
        "peak_memory_mb": max(peak, 0) / 2**20,
        "load_avg": load_avg,
        "runtime_version": version,
        "reference_ms": [reference_before, reference_after],
    }


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
