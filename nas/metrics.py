"""Binary classification metrics at a clinical operating point, in plain NumPy (checked against scikit-learn)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["roc_auc", "threshold_for_sensitivity", "binary_metrics", "bootstrap_ci"]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic, ties counted half."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative cases")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct score
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold t such that predicting positive for score >= t reaches `target` sensitivity."""
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    positives = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(labels).astype(bool)])[::-1]
    if positives.size == 0:
        raise ValueError("no positive cases to set a sensitivity threshold on")
    needed = max(1, math.ceil(target * positives.size - 1e-9))
    return float(positives[needed - 1])


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, and accuracy / sensitivity / specificity when calling score >= threshold positive."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & labels).sum())
    tn = int((~predicted & ~labels).sum())
    return {
        "auc": roc_auc(labels, scores),
        "accuracy": (tp + tn) / labels.size,
        "sensitivity": tp / max(1, int(labels.sum())),
        "specificity": tn / max(1, int((~labels).sum())),
        "threshold": float(threshold),
    }


def bootstrap_ci(
    labels: np.ndarray, scores: np.ndarray, threshold: float, *, resamples: int = 1000, level: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of `binary_metrics` (cases resampled with replacement; resamples that
    lose a class are skipped). Seeded, so a model card is reproducible."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"auc": [], "accuracy": [], "sensitivity": [], "specificity": []}
    for _ in range(resamples):
        index = rng.integers(0, labels.size, labels.size)
        sample = labels[index]
        if sample.all() or not sample.any():
            continue
        for key, value in binary_metrics(sample, scores[index], threshold).items():
            if key in draws:
                draws[key].append(value)
    tail = (1 - level) / 2 * 100
    return {key: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for key, v in draws.items()}
