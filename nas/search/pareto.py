"""Pareto maths on plain numbers, apart from Optuna and plotting, so it is easy to test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_minimized(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=np.float64).reshape(len(values), len(directions)) * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a dominates b (both minimised): no worse in every objective and better in one."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """For each point, whether no other point dominates it (duplicates of a front point stay on the front)."""
    points = _as_minimized(values, directions)
    return [not any(dominates(other, p) for other in points) for p in points]


def knee(values: Sequence[Sequence[float]], directions: Sequence[str]) -> int:
    """Index of the point closest to the ideal point after scaling each objective to [0, 1]."""
    points = _as_minimized(values, directions)
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.where(high > low, high - low, 1.0)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))
