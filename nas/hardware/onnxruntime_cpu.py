"""ONNX Runtime on the local CPU: the `cpu` profile's backend."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
import tempfile
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nas.errors import TrialError
from nas.hardware._backend import BACKENDS, LatencyBackend
from nas.hardware._measurement import Measurement, cpu_name, summarize
from nas.hardware._profile import HardwareProfile, Protocol
from nas.spec import Precision

CPU_PRECISIONS = ("fp32", "int8")
# A run whose tail is far from its median was disturbed (another process took the cores); it is timed again, up to
# this many times, and the quietest attempt is kept, as timeit keeps the best of its repeats.
MAX_ATTEMPTS = 3
TIMER_GRACE_S = 30.0
"""Beyond its protocol's bounds (warm-up time, two timing loops of at most max_seconds), what one timing process may
take to load the session and finish its last run before it is killed (timer_timeout_s)."""


@contextmanager
def device_lock(device: str) -> Iterator[None]:
    """One timer at a time per device on this machine (settled point 6): parallel workers queue here."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-")[:80]
    path = Path(tempfile.gettempdir()) / f"nas-measure-{slug}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def timer_timeout_s(protocol: Protocol) -> float:
    """The longest one timing process may run before it is killed and the measurement fails."""
    return protocol.warmup_s + 2 * protocol.max_seconds + TIMER_GRACE_S


def available_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxRuntimeCPU(LatencyBackend):
    name = "onnxruntime"
    precisions = CPU_PRECISIONS

    def measure(
        self, onnx_path: Path, *, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...],
        model: object = None,
    ) -> Measurement:
        self.check_precision(profile, precision)
        threads = profile.threads or available_threads()
        request = {
            "onnx": str(onnx_path), "input_shape": list(input_shape), "batch": profile.batch,
            "throughput_batch": profile.throughput_batch, "threads": threads,
            "protocol": profile.protocol.model_dump(),
        }
        device = cpu_name()
        attempts: list[Measurement] = []
        with device_lock(device):
            while True:
                attempts.append(self._time_once(onnx_path, request, device, precision, profile, threads))
                if attempts[-1].stable or len(attempts) == MAX_ATTEMPTS:
                    break
                time.sleep(1.0)  # let whatever disturbed the run pass
        quietest = min(attempts, key=lambda m: m.p95_ms / m.p50_ms)
        return quietest.model_copy(update={"attempts": len(attempts)})

    def _time_once(self, onnx_path: Path, request: dict, device: str, precision: Precision,
                   profile: HardwareProfile, threads: int) -> Measurement:
        timeout = timer_timeout_s(profile.protocol)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "nas.hardware._ort_timer"], input=json.dumps(request),
                capture_output=True, text=True, check=False, timeout=timeout,
                start_new_session=True,  # a terminal's Ctrl-C reaches the search, which stops after this timing
            )
        except subprocess.TimeoutExpired:
            raise TrialError(f"timing {onnx_path} with ONNX Runtime took over {timeout:g} s (warmup_s + 2 x "
                             f"max_seconds + {TIMER_GRACE_S:g} s) and was stopped") from None
        if proc.returncode != 0:
            raise TrialError(f"ONNX Runtime could not run {onnx_path}: {_final_exception(proc.stderr)}")
        result = json.loads(proc.stdout)
        return Measurement(
            **summarize(np.asarray(result["times_ms"])),
            seconds=result["seconds"], throughput_ips=result["throughput_ips"],
            throughput_batch=result["throughput_batch"], peak_memory_mb=result["peak_memory_mb"],
            model_bytes=Path(onnx_path).stat().st_size, backend=self.name,
            runtime_version=f"onnxruntime {result['runtime_version']}", device=device, precision=precision,
            batch=profile.batch, threads=threads, method="measured", load_avg=result["load_avg"],
        )


def _final_exception(stderr: str) -> str:
    """The traceback's last exception with its continuation lines: ONNX Runtime puts the cause before a generic
    last line ("Please fix either the inputs/outputs or the model.")."""
    lines = stderr.strip().splitlines() or ["no output"]
    start = max((i for i, line in enumerate(lines) if line and not line[0].isspace()
                 and not line.startswith("Traceback")), default=len(lines) - 1)
    return " ".join(line.strip() for line in lines[start:])


BACKENDS.register(OnnxRuntimeCPU.name, OnnxRuntimeCPU)
