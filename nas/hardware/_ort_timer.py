"""Times one ONNX model with ONNX Runtime in a fresh process (run as `python -m nas.hardware._ort_timer`).

A separate process gives every model the same conditions (no training threads, no allocator state left over
from an earlier model) and an honest peak-memory figure: this process's resident high-water mark (VmHWM, which
exec resets, unlike ru_maxrss) minus what it used before the session was created. Reads a JSON request on stdin, writes a JSON result on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _time_runs(session: ort.InferenceSession, feed: dict, min_runs: int, min_s: float, max_s: float) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - start
        if (len(times) >= min_runs and elapsed >= min_s) or elapsed >= max_s:
            return times


def run(request: dict) -> dict:
    protocol = request["protocol"]
    baseline_rss = _status_bytes("VmRSS")
    options = ort.SessionOptions()
    options.intra_op_num_threads = request["threads"]
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(request["onnx"], options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    rng = np.random.default_rng(0)

    def feed(batch: int) -> dict:
        return {spec.name: rng.standard_normal((batch, *request["input_shape"])).astype(np.float32)}

    batch_feed = feed(request["batch"])
    warm_until = time.perf_counter() + protocol["warmup_s"]
    for i in range(10_000):
        session.run(None, batch_feed)
        if i + 1 >= protocol["warmup_runs"] and time.perf_counter() >= warm_until:
            break
    load_avg = os.getloadavg()[0]
    started = time.perf_counter()
    times = _time_runs(session, batch_feed, protocol["min_runs"], protocol["min_seconds"], protocol["max_seconds"])
    throughput = None
    tb = request.get("throughput_batch")
    if tb and isinstance(spec.shape[0], str | type(None)):  # only a dynamic batch axis takes another batch size
        big = feed(tb)
        session.run(None, big)
        bt = _time_runs(session, big, protocol["throughput_min_runs"], protocol["throughput_min_seconds"],
                        protocol["max_seconds"])
        throughput = tb / (float(np.median(bt)) / 1000.0)
    peak = _status_bytes("VmHWM") - baseline_rss
    return {
        "times_ms": times,
        "seconds": time.perf_counter() - started,
        "throughput_ips": throughput,
        "throughput_batch": tb if throughput else None,
        "peak_memory_mb": max(peak, 0) / 2**20,
        "load_avg": load_avg,
        "runtime_version": ort.__version__,
    }


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
