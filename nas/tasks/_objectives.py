"""Objectives a study can optimise, each read from a finished trial's result (`nas.search.result.TrialResult`).

The registry sits with the tasks, below the search, so a task registers its own objectives (the nodule task's
`cpm`) where it registers itself, and any caller sees them without importing the search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nas._registry import Registry

__all__ = ["OBJECTIVES", "Direction", "Objective"]

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction
    description: str
    value: Callable[[Any], float]
    """A finished trial's value, read from its result (metrics, measurement, params, macs)."""


OBJECTIVES: Registry[Objective] = Registry("objective")

for _objective in (
    Objective("auc", "maximize", "validation ROC AUC of the deployed artifact", lambda r: r.metrics["val"]["auc"]),
    Objective("sensitivity", "maximize", "validation sensitivity at the operating threshold",
              lambda r: r.metrics["val"]["sensitivity"]),
    Objective("specificity", "maximize", "validation specificity at the operating threshold",
              lambda r: r.metrics["val"]["specificity"]),
    Objective("latency_p50", "minimize", "median latency on the target (ms)", lambda r: r.measurement.p50_ms),
    Objective("latency_p95", "minimize", "95th-percentile latency on the target (ms)", lambda r: r.measurement.p95_ms),
    Objective("params", "minimize", "parameter count", lambda r: float(r.params)),
    Objective("macs", "minimize", "multiply-accumulates per image (fvcore)", lambda r: float(r.macs)),
    Objective("peak_memory", "minimize", "runtime memory while inferring (MB)", lambda r: r.measurement.peak_memory_mb),
):
    OBJECTIVES.register(_objective.name, _objective)
