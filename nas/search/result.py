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
    """{"val": {...}}, plus {"test": {...}} once computed for the final report."""
    train_log: dict[str, object] = {}
    seconds: dict[str, float] = {}
    """Wall-clock time per phase (export, measure, train, evaluate)."""
