"""Resolving a study's objective names; the objectives themselves are registered with the tasks."""

from __future__ import annotations

from nas.errors import ConfigError
from nas.tasks import OBJECTIVES, Direction, Objective

__all__ = ["DEFAULT_OBJECTIVES", "OBJECTIVES", "Direction", "Objective", "resolve_objectives"]

DEFAULT_OBJECTIVES = ("auc", "latency_p95")


def resolve_objectives(names: list[str] | tuple[str, ...]) -> list[Objective]:
    objectives = [OBJECTIVES.get(n) for n in names]
    if len({o.name for o in objectives}) != len(objectives):
        raise ConfigError(f"objectives repeat a name: {', '.join(names)}")
    return objectives
