"""A latency measurement and where it came from: every number carries its provenance."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from nas.spec import Precision

Method = Literal["measured", "remote", "estimated", "composed"]


class Disturbance(BaseModel):
    """How much other work disturbed a timing (nas.hardware.disturbance), and what was done about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference_ms: tuple[float, float]
    """The reference kernel's median just before and just after the timed runs."""
    quiet_reference_ms: float
    """The fastest this machine has run the reference kernel with the same threads."""
    slowdown: float
    spread: float
    """p95 / p50 of the timed runs."""
    load_avg: float
    disturbed: bool
    reason: str | None = None
    retakes: int = 0
    waited_s: float = 0.0
    """Time spent waiting for the machine to quiet before retaking."""
    gave_up: bool = False
    """Still disturbed after the bounded wait and retakes: the trial goes on with this label, judged on p50."""


class Measurement(BaseModel):
    """Latency percentiles at `batch`, throughput at `throughput_batch`, and provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    cv: float
    """Coefficient of variation of the timed runs (std / mean)."""
    runs: int
    seconds: float
    throughput_ips: float | None
    throughput_batch: int | None
    peak_memory_mb: float
    """Resident memory the runtime added while loading and running the model (high-water minus baseline)."""
    model_bytes: int
    backend: str
    runtime_version: str
    device: str
    precision: Precision
    batch: int
    threads: int | None
    method: Method
    load_avg: float
    """1-minute load average when timing began: a busy machine shows here."""
    attempts: int = 1
    """Timed runs made; more than one when earlier ones were disturbed (see `stable`)."""
    build_seconds: float | None = None
    """Time to build the runtime's engine first, where there is one (TensorRT)."""
    reused_from: str | None = None
    """Set when this record was not timed now but reused from the measurement cache: where and when it was."""
    disturbance: Disturbance | None = None
    """Local CPU timings: how disturbed the kept timing was; None where it is not assessed (GPU, remote)."""
    session_p50_ms: list[float] | None = None
    """With the protocol's `sessions` > 1: each fresh process's p50 (this record is the fastest one's timing)."""

    @property
    def stable(self) -> bool:
        """Undisturbed: the 95th percentile within twice the median."""
        return self.p95_ms <= 2 * self.p50_ms

    @property
    def disturbed(self) -> bool:
        """Other work disturbed this timing: by its assessment where there is one, else by its spread."""
        return self.disturbance.disturbed if self.disturbance is not None else not self.stable

    def short(self) -> str:
        return f"p50 {self.p50_ms:.3f} ms, p95 {self.p95_ms:.3f} ms ({self.backend}, {self.precision}, b{self.batch})"


def summarize(times_ms: np.ndarray) -> dict[str, float]:
    mean = float(times_ms.mean())
    return {
        "p50_ms": float(np.percentile(times_ms, 50)),
        "p95_ms": float(np.percentile(times_ms, 95)),
        "p99_ms": float(np.percentile(times_ms, 99)),
        "mean_ms": mean,
        "cv": float(times_ms.std() / mean) if mean > 0 else 0.0,
        "runs": int(times_ms.size),
    }


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model as the OS reports it, e.g. 'AMD EPYC 7B13 (x86_64)'."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model or platform.processor() or 'unknown CPU'} ({platform.machine()})"
