"""ONNX Runtime on the local CPU: the `cpu` profile's first backend, and the timing every local CPU runtime
shares (nas.hardware._timer, in a fresh process, bracketed by the disturbance reference kernel)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nas.errors import TrialError
from nas.hardware._backend import BACKENDS, LatencyBackend
from nas.hardware._measurement import Measurement, cpu_name, summarize
from nas.hardware._profile import HardwareProfile, Protocol
from nas.hardware.disturbance import assess, measure_undisturbed, quiet_reference, reference_onnx
from nas.spec import Precision

CPU_PRECISIONS = ("fp32", "int8")
TIMER = str(Path(__file__).with_name("_timer.py"))
"""Run as a script (-P: its folder not on sys.path) so the timing process does not import torch."""
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


class LocalCPUBackend(LatencyBackend):
    """A CPU runtime timed by nas.hardware._timer: same protocol, threads, input and provenance for each."""

    precisions = CPU_PRECISIONS
    label: str
    """The runtime's name in error messages."""

    def measure(
        self, onnx_path: Path, *, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...],
        model: object = None,
    ) -> Measurement:
        self.check_precision(profile, precision)
        threads = profile.threads or available_threads()
        request = {
            "runtime": self.name, "model": str(onnx_path), "input_shape": list(input_shape), "batch": profile.batch,
            "throughput_batch": profile.throughput_batch, "threads": threads,
            "protocol": profile.protocol.model_dump(), "reference": reference_onnx(),
        }
        device = cpu_name()
        with device_lock(device):
            timings = [measure_undisturbed(
                lambda: self._time_once(onnx_path, request, device, precision, profile, threads), threads=threads,
                max_attempts=profile.protocol.max_attempts, quiet_wait_s=profile.protocol.quiet_wait_s)
                for _ in range(profile.protocol.sessions)]
        fastest = min(timings, key=lambda m: m.p50_ms)
        return fastest if len(timings) == 1 else \
            fastest.model_copy(update={"session_p50_ms": [m.p50_ms for m in timings]})

    def _time_once(self, onnx_path: Path, request: dict, device: str, precision: Precision,
                   profile: HardwareProfile, threads: int) -> Measurement:
        timeout = timer_timeout_s(profile.protocol)
        try:
            proc = subprocess.run(
                [sys.executable, "-P", TIMER], input=json.dumps(request),
                capture_output=True, text=True, check=False, timeout=timeout,
                start_new_session=True,  # a terminal's Ctrl-C reaches the search, which stops after this timing
            )
        except subprocess.TimeoutExpired:
            raise TrialError(f"timing {onnx_path} with {self.label} took over {timeout:g} s (warmup_s + 2 x "
                             f"max_seconds + {TIMER_GRACE_S:g} s) and was stopped") from None
        if proc.returncode != 0:
            raise TrialError(f"{self.label} could not run {onnx_path}: {_final_exception(proc.stderr)}")
        result = json.loads(proc.stdout)
        stats = summarize(np.asarray(result["times_ms"]))
        before, after = result["reference_ms"]
        quiet = quiet_reference(device, threads, min(before, after))
        return Measurement(
            **stats,
            seconds=result["seconds"], throughput_ips=result["throughput_ips"],
            throughput_batch=result["throughput_batch"], peak_memory_mb=result["peak_memory_mb"],
            model_bytes=_artifact_bytes(Path(onnx_path)), backend=self.name,
            runtime_version=result["runtime_version"], device=device, precision=precision,
            batch=profile.batch, threads=threads, method="measured", load_avg=result["load_avg"],
            disturbance=assess((before, after), quiet or min(before, after), stats["p50_ms"], stats["p95_ms"],
                               result["load_avg"]),
        )


class OnnxRuntimeCPU(LocalCPUBackend):
    name = "onnxruntime"
    label = "ONNX Runtime"


def _artifact_bytes(path: Path) -> int:
    """An ONNX file's size, or an OpenVINO IR's graph and weights together."""
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" and weights.exists() else 0)


def _final_exception(stderr: str) -> str:
    """The traceback's last exception with its continuation lines: ONNX Runtime puts the cause before a generic
    last line ("Please fix either the inputs/outputs or the model.")."""
    lines = stderr.strip().splitlines() or ["no output"]
    start = max((i for i, line in enumerate(lines) if line and not line[0].isspace()
                 and not line.startswith("Traceback")), default=len(lines) - 1)
    return " ".join(line.strip() for line in lines[start:])


BACKENDS.register(OnnxRuntimeCPU.name, OnnxRuntimeCPU)
