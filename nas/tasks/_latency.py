"""A candidate's time composed from its stages' measurements: what a multi-stage task reports per whole scan."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ScanLatency", "StageTiming"]


class StageTiming(BaseModel):
    """One stage's share of a whole scan's time: its measured per-run time times its runs per scan."""

    model_config = ConfigDict(extra="forbid")

    p50_ms: float
    p95_ms: float
    p99_ms: float
    runs: float
    """Runs per scan (averaged over scans): batches of tiles, candidates, or 1 for pre-processing."""
    per_run_p50_ms: float
    batch: int
    precision: str
    unit: str
    """What one run is, e.g. 'batch of 64 tiles'."""


class ScanLatency(BaseModel):
    """A multi-stage pipeline's time for one whole scan, with its stage breakdown (pareto.v1 `scan_ms`/`stages`)."""

    model_config = ConfigDict(extra="forbid")

    scan_ms: float
    stages: dict[str, StageTiming]
    scans: int
    """How many scans the runs per scan were averaged over."""
    precision: str
    """The stages' precision, or 'mixed' when they differ."""

    def latency_fields(self) -> dict[str, Any]:
        """What pareto.json's `latency` adds for a pipeline: `scan_ms`, `stages`, and the pipeline's precision."""
        return {"scan_ms": self.scan_ms, "stages": {k: v.model_dump() for k, v in self.stages.items()},
                "precision": self.precision}
