"""Hypervolume of a front: one number that grows as a search improves, so its history shows convergence.

Optuna computes hypervolumes internally (``optuna._hypervolume``) but exposes them only through
``plot_hypervolume_history``, which needs a live ``Study``; the report reads stored results instead, and a
private module can move between releases. So the exact computation lives here: a sweep in two dimensions and
slicing along the last objective above that (exact in any dimension, fast enough for the fronts of tens of
points that searches here produce, slow for fronts of hundreds of points in five or more objectives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["hypervolume", "hypervolume_history"]


def hypervolume(values: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]) -> float:
    """Volume dominated by `values` and bounded by `reference` (a point worse than every one of interest).

    Points no better than the reference in some objective add nothing.
    """
    signs = _signs(directions)
    points = np.asarray(values, dtype=np.float64).reshape(-1, len(signs)) * signs
    ref = np.asarray(reference, dtype=np.float64) * signs
    return _volume(_front(points[np.all(points < ref, axis=1)]), ref)


def _signs(directions: Sequence[str]) -> np.ndarray:
    """Multipliers that turn every objective into one to minimise."""
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


def _front(points: np.ndarray) -> np.ndarray:
    """The distinct non-dominated points (all minimised): fewer points, same volume."""
    points = np.unique(points, axis=0)
    keep = [not np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1)) for p in points]
    return points[keep]


def _volume(points: np.ndarray, ref: np.ndarray) -> float:
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    if points.shape[1] == 2:
        total, best_y = 0.0, ref[1]
        for x, y in points[np.lexsort((points[:, 1], points[:, 0]))]:
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(total)
    # Slice along the last objective: between consecutive levels the cross-section is the front of the
    # points already passed, one dimension down.
    points = points[np.argsort(points[:, -1], kind="stable")]
    levels = np.append(points[1:, -1], ref[-1])
    total = 0.0
    for i, (low, high) in enumerate(zip(points[:, -1], levels)):
        if high > low:
            total += _volume(_front(points[: i + 1, :-1]), ref[:-1]) * (high - low)
    return float(total)


def hypervolume_history(values: Sequence[Sequence[float]], directions: Sequence[str], *,
                        margin: float = 0.1) -> list[float]:
    """Hypervolume of the first k points for every k, in a space where the objectives are comparable.

    Each objective is scaled to [0, 1] over all the points (0 the best seen, 1 the worst), and the reference sits
    `margin` beyond the worst, so the extreme points still count. The result is a fraction of the box
    [0, 1 + margin]^d: 0 for no points, and the same scale however the objectives are measured.
    """
    if len(values) == 0:
        return []
    points = np.asarray(values, dtype=np.float64).reshape(len(values), len(directions)) * _signs(directions)
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.where(high > low, high - low, 1.0)
    ref = np.full(len(directions), 1.0 + margin)
    box = float(np.prod(ref))
    front, volume, history = scaled[:0], 0.0, []
    for p in scaled:  # the front grows one point at a time, so each step recomputes a small set
        if not np.any(np.all(front <= p, axis=1)):
            front = np.vstack([front[~np.all(p <= front, axis=1)], p])
            volume = _volume(front, ref) / box
        history.append(volume)
    return history
