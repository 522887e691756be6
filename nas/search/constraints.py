"""The one constraint model: a study's latency budget and sensitivity floor, stored once with its settings and
judged by one function wherever feasibility is asked (the trial, the runner, finalize, the report, `nas pick`)."""

from __future__ import annotations

from dataclasses import dataclass

from nas.hardware import Measurement
from nas.search.result import TrialResult

__all__ = ["Constraints", "budget_basis", "budget_latency_ms", "constraint_values", "result_constraints"]


@dataclass(frozen=True)
class Constraints:
    """Hard limits: p95 latency on the target (per inference, or per whole scan for a multi-stage task), and
    sensitivity on the validation split."""

    max_latency_ms: float | None = None
    min_sensitivity: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"max_latency_ms": self.max_latency_ms, "min_sensitivity": self.min_sensitivity}


def constraint_values(constraints: Constraints, *, p95_ms: float, sensitivity: float | None) -> dict[str, float]:
    """Optuna's convention (not penalties): each value <= 0 is met. Before training (phase 1) the sensitivity is
    None and only the latency budget is judged. Keys are the constraint names (`max_latency_ms`, ...)."""
    values = {}
    if constraints.max_latency_ms is not None:
        values["max_latency_ms"] = p95_ms - constraints.max_latency_ms
    if constraints.min_sensitivity is not None and sensitivity is not None:
        values["min_sensitivity"] = constraints.min_sensitivity - sensitivity
    return values


def budget_latency_ms(m: Measurement) -> float:
    """The latency a budget is judged on: p95, which is what a clinic feels, when the timing was undisturbed; p50
    for a timing still labelled disturbed after every retake (the median is the model's, the tail belongs to
    whoever else held the cores; the label stays on the record)."""
    return m.p50_ms if m.disturbance is not None and m.disturbance.gave_up else m.p95_ms


def budget_basis(m: Measurement) -> str:
    return "p50 (disturbed: the machine never quieted)" if budget_latency_ms(m) != m.p95_ms else "p95"


def result_constraints(constraints: Constraints, result: TrialResult) -> dict[str, float]:
    """`constraint_values` of a trained trial: its budget latency and its validation sensitivity."""
    return constraint_values(constraints, p95_ms=budget_latency_ms(result.measurement),
                             sensitivity=float(result.metrics["val"]["sensitivity"]))
