"""FROC analysis by LUNA16's rules: sensitivity against false positives per scan, and the CPM that averages it.

A candidate is a hit when it lies within a reference nodule's radius of its centre; several hits on one nodule
count once (the nodule is found at the best score among them). A candidate that hits no nodule but lies within an
excluded finding (a nodule under the reference rule, a non-nodule mark) counts neither as hit nor as false
positive. Everything else is a false positive.

Sensitivity at a false-positive rate r is the highest sensitivity of any operating point (score threshold) with at
most r false positives per scan: the FROC curve read as a step function, never interpolated upwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FP_RATES", "Candidate", "Finding", "Froc", "ScanTruth", "estimated_froc", "froc", "hits_by_candidate", "match",
           "rate_key"]

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""LUNA16's false-positive rates per scan; the CPM is the mean sensitivity over them."""
UNKNOWN_DIAMETER_MM = 10.0
"""Radius basis for an excluded finding without a size (LUNA16's evaluation script uses 10 mm)."""


@dataclass(frozen=True)
class Finding:
    """A reference nodule or an excluded finding, in world mm; diameter None when unknown."""

    world_mm: tuple[float, float, float]
    diameter_mm: float | None

    @property
    def radius_mm(self) -> float:
        return (self.diameter_mm if self.diameter_mm and self.diameter_mm > 0 else UNKNOWN_DIAMETER_MM) / 2.0


@dataclass(frozen=True)
class ScanTruth:
    series_uid: str
    nodules: tuple[Finding, ...]
    excluded: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class Candidate:
    world_mm: tuple[float, float, float]
    score: float


@dataclass(frozen=True)
class Froc:
    sensitivity_at_fp: dict[str, float]
    cpm: float
    nodules: int
    scans: int
    curve: list[tuple[float, float, float]] = field(default_factory=list)
    """(threshold, false positives per scan, sensitivity) at every distinct score, highest threshold first."""

    def metrics(self) -> dict[str, float | dict[str, float]]:
        return {"cpm": self.cpm, "sensitivity_at_fp": dict(self.sensitivity_at_fp)}

    def at_threshold(self, threshold: float) -> tuple[float, float]:
        """(sensitivity, false positives per scan) when candidates scoring >= threshold are reported."""
        points = [(fps, sens) for t, fps, sens in self.curve if t >= threshold]
        return (points[-1][1], points[-1][0]) if points else (0.0, 0.0)


def rate_key(rate: float) -> str:
    """The JSON key of a false-positive rate: "0.125", "1", "8"."""
    return f"{rate:g}"


def _within(point: np.ndarray, findings: Sequence[Finding]) -> list[int]:
    return [n for n, f in enumerate(findings)
            if float(np.linalg.norm(point - np.asarray(f.world_mm))) <= f.radius_mm]


def hits_by_candidate(truth: ScanTruth, candidates: Sequence[Candidate]) -> list[tuple[int, ...] | None]:
    """Per candidate, the indices of the reference nodules it hits; () for one inside an excluded finding only
    (neither hit nor false positive); None for a false positive."""
    labels: list[tuple[int, ...] | None] = []
    for c in candidates:
        point = np.asarray(c.world_mm, dtype=np.float64)
        hits = _within(point, truth.nodules)
        labels.append(tuple(hits) if hits else () if _within(point, truth.excluded) else None)
    return labels


def match(truth: ScanTruth, candidates: Sequence[Candidate]) -> tuple[np.ndarray, list[float]]:
    """Each reference nodule's best hit score (-inf when missed) and the scores of the false positives."""
    best = np.full(len(truth.nodules), -np.inf)
    false_positives: list[float] = []
    for c, hits in zip(candidates, hits_by_candidate(truth, candidates)):
        if hits:
            best[list(hits)] = np.maximum(best[list(hits)], c.score)
        elif hits is None:
            false_positives.append(float(c.score))
    return best, false_positives


def froc(truths: Sequence[ScanTruth], candidates: Sequence[Sequence[Candidate]],
         rates: Sequence[float] = FP_RATES) -> Froc:
    """FROC over scans (`candidates[i]` belongs to `truths[i]`). Raises ValueError without reference nodules,
    where sensitivity is undefined."""
    if len(truths) != len(candidates):
        raise ValueError(f"{len(truths)} scans but {len(candidates)} candidate lists")
    best_all: list[np.ndarray] = []
    fps_all: list[float] = []
    for truth, found in zip(truths, candidates):
        best, fps = match(truth, found)
        best_all.append(best)
        fps_all.extend(fps)
    best = np.concatenate(best_all) if best_all else np.zeros(0)
    if best.size == 0:
        raise ValueError("no reference nodules in these scans: sensitivity is undefined")
    return _curve(np.ones(best.size), best, np.asarray(fps_all, dtype=np.float64), 1.0 / len(truths), len(truths),
                  rates)


def estimated_froc(passed: np.ndarray, scores: np.ndarray, false_positives: Sequence[float], per_scan: float,
                   scans: int = 1, rates: Sequence[float] = FP_RATES) -> Froc:
    """FROC from nodules and false positives seen outside whole scans: nodule i counts `passed[i]` (the chance stage
    1 hands it on, 0..1) when its stage-2 `scores[i]` clears the threshold; `false_positives` are stage-2 scores of a
    sample of what stage 1 hands on that is no nodule, of which a scan holds `per_scan` (counted on `scans` scans).
    Sensitivity at threshold t = sum(passed[i] for scores[i] >= t) / nodules, at per_scan x (share of the sample
    >= t) false positives per scan; read at each rate as `froc` reads its curve. Raises ValueError without nodules
    or false positives."""
    scores = np.asarray(scores, dtype=np.float64)
    fp_scores = np.asarray(false_positives, dtype=np.float64)
    if scores.size == 0 or fp_scores.size == 0:
        raise ValueError("an estimated FROC needs nodules and a sample of false positives")
    return _curve(np.asarray(passed, dtype=np.float64), scores, fp_scores, per_scan / fp_scores.size, scans, rates)


def _curve(weights: np.ndarray, best: np.ndarray, fp_scores: np.ndarray, fp_weight: float, scans: int,
           rates: Sequence[float]) -> Froc:
    """Weighted sensitivity against false positives per scan (each of `fp_scores` counting `fp_weight`) at every
    distinct score, and its reading at `rates`."""
    thresholds = np.unique(np.concatenate([best[np.isfinite(best)], fp_scores]))[::-1]
    curve = [(float(t), float((fp_scores >= t).sum()) * fp_weight, float(weights[best >= t].sum()) / best.size)
             for t in thresholds]
    at = {rate_key(r): max([sens for _, fps, sens in curve if fps <= r], default=0.0) for r in rates}
    return Froc(sensitivity_at_fp=at, cpm=float(np.mean(list(at.values()))), nodules=int(best.size), scans=scans,
                curve=curve)
