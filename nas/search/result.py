"""What one trial produced, as plain data stored on the Optuna trial and in results/<study>/trials/<n>/."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from nas.hardware import Measurement
from nas.hardware.runtime_choice import RuntimeChoice
from nas.spec import Spec
from nas.tasks import ScanLatency

Metrics = dict[str, float | dict[str, float]]
"""Metric name -> value; a few are keyed further (the nodule task's `sensitivity_at_fp`: FPs per scan -> value)."""


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trial: int
    spec: Spec
    """The searched model; for a two-stage candidate the second stage (the one compressed), whole in `pipeline`."""
    params: int
    macs: int
    measurement: Measurement
    """Latency on the target: one inference at the profile's batch, or for a pipeline one whole scan."""
    metrics: dict[str, Metrics]
    """Of the deployed artifact: {"val": {...}}, plus {"test": {...}} once computed for the final report."""
    float_metrics: dict[str, Metrics] = {}
    """Of the float model before quantization, so each compression step's cost is visible."""
    latency_by_precision: dict[str, Measurement] = {}
    """Every precision measured for this candidate (fp32 beside a quantized one), on the chosen runtime."""
    runtime_choice: RuntimeChoice | None = None
    """Every runtime x precision timed in phase 1 and the runtime the candidate ships with (settled point 19)."""
    teacher: str | None = None
    flags: list[str] = []
    """Things a user choosing this model should know (INT8 not faster, distillation without a teacher)."""
    train_log: dict[str, object] = {}
    seconds: dict[str, float] = {}
    """Wall-clock time per phase (export, measure, train, evaluate)."""
    pipeline: dict[str, Any] | None = None
    """A multi-stage candidate's full spec (the nodule task's NoduleSpec), None for one model."""
    scan_latency: ScanLatency | None = None
    """A pipeline's whole-scan time and its stages; `measurement` then holds that time as a Measurement."""
    latency_by_stage: dict[str, Measurement] = {}
    """Each stage's own measurement (at its batch), from which `scan_latency` is composed."""


def measurement_from_entry(latency: dict[str, Any]) -> Measurement:
    """A pareto.json `latency` entry read back as a Measurement: a pipeline's extra fields (`scan_ms`, `stages`)
    are dropped, and its precision 'mixed' becomes its last stage's (the searched, compressed one)."""
    known = {k: v for k, v in latency.items() if k in Measurement.model_fields}
    if known.get("precision") == "mixed":
        known["precision"] = list(latency["stages"].values())[-1]["precision"]
    return Measurement.model_validate(known)
