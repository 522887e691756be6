"""What one trial produced, as plain data stored on the Optuna trial and in results/<study>/trials/<n>/."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from nas.hardware import Measurement
from nas.spec import Spec


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trial: int
    spec: Spec
    params: int
    macs: int
    measurement: Measurement
    metrics: dict[str, dict[str, float]]
    """Of the deployed artifact: {"val": {...}}, plus {"test": {...}} once computed for the final report."""
    float_metrics: dict[str, dict[str, float]] = {}
    """Of the float model before quantization, so each compression step's cost is visible."""
    latency_by_precision: dict[str, Measurement] = {}
    """Every precision measured for this candidate (fp32 beside a quantized one)."""
    teacher: str | None = None
    flags: list[str] = []
    """Things a user choosing this model should know (INT8 not faster, distillation without a teacher)."""
    train_log: dict[str, object] = {}
    seconds: dict[str, float] = {}
    """Wall-clock time per phase (export, measure, train, evaluate)."""
