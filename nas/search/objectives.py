"""Objectives a study can optimise, each read from a finished trial's result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nas._registry import Registry
from nas.errors import ConfigError
from nas.search.result import TrialResult

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction
    description: str
    value: Callable[[TrialResult], float]


OBJECTIVES: Registry[Objective] = Registry("objective")
DEFAULT_OBJECTIVES = ("auc", "latency_p95")


def _register(name: str, direction: Direction, description: str, value: Callable[[TrialResult], float]) -> None:
    OBJECTIVES.register(name, Objective(name, direction, description, value))


_register("auc", "maximize", "validation ROC AUC of the deployed artifact", lambda r: r.metrics["val"]["auc"])
_register("sensitivity", "maximize", "validation sensitivity at the operating threshold",
          lambda r: r.metrics["val"]["sensitivity"])
_register("specificity", "maximize", "validation specificity at the operating threshold",
          lambda r: r.metrics["val"]["specificity"])
_register("latency_p50", "minimize", "median latency on the target (ms)", lambda r: r.measurement.p50_ms)
_register("latency_p95", "minimize", "95th-percentile latency on the target (ms)", lambda r: r.measurement.p95_ms)
_register("params", "minimize", "parameter count", lambda r: float(r.params))
_register("macs", "minimize", "multiply-accumulates per image (fvcore)", lambda r: float(r.macs))
_register("peak_memory", "minimize", "runtime memory while inferring (MB)", lambda r: r.measurement.peak_memory_mb)


def resolve_objectives(names: list[str] | tuple[str, ...]) -> list[Objective]:
    objectives = [OBJECTIVES.get(n) for n in names]
    if len({o.name for o in objectives}) != len(objectives):
        raise ConfigError(f"objectives repeat a name: {', '.join(names)}")
    return objectives
