"""Scores a clinician can read as probabilities, and the band of scores too close to call.

A network trained with cross-entropy on a few thousand images is usually over-confident: its softmax says 0.999
where the observed rate is 0.8. Temperature scaling (Guo et al., 2017) divides the logits by one scalar T fitted
on validation; it leaves the ranking (so AUC, and sensitivity/specificity at the matching threshold) unchanged
and only makes the score mean what it says. The referral band is the set of scores around the operating
threshold where the model is least sure; a case there goes to a reader instead of getting an automatic call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ECE_BINS", "MIN_BAND_WIDTH", "MIN_SCORE_SPREAD", "ScoreHealth", "calibrated_scores",
           "expected_calibration_error", "fit_temperature", "in_band", "referral_band", "score_health", "score_logit"]

ECE_BINS = 15
MIN_SCORE_SPREAD = 0.10
"""Calibrated validation scores whose 5th-95th percentile range is narrower than this have collapsed: every case
gets about the same score (a large temperature over a model that barely separates the classes)."""
MIN_BAND_WIDTH = 0.01
"""A referral band narrower than this (in score) tells cases apart by differences too small to mean anything."""
ASKED_SLACK = 0.02
"""How far the band's share of validation may stray from the asked rate before the card says why (ties)."""
_LOG_T_BOUNDS = (-5.0, 5.0)  # T in [0.007, 148]: wider than any network needs
_EPS = 1e-12  # scores are clipped to [EPS, 1 - EPS] before taking logits, so 0 and 1 stay finite


def _margins(logits: np.ndarray) -> np.ndarray:
    """Positive minus negative logit: with two classes, softmax(z / T)[1] = sigmoid((z1 - z0) / T)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"expected logits of shape (N, 2) for a binary model, got {logits.shape}")
    return logits[:, 1] - logits[:, 0]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))  # no overflow for large |x|


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the validation negative log-likelihood of softmax(logits / T).

    One-dimensional and convex in 1/T, so a bounded search over log T finds the optimum without a learning rate.
    """
    margins = _margins(logits)
    signs = np.where(np.asarray(labels).astype(bool), 1.0, -1.0)
    if margins.size == 0:
        raise ValueError("no validation cases to fit a temperature on")

    def nll(log_t: float) -> float:
        return float(np.logaddexp(0.0, -signs * margins / math.exp(log_t)).mean())

    from scipy.optimize import minimize_scalar  # scipy takes seconds to import: only when a model is calibrated

    found = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def calibrated_scores(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Positive-class probability softmax(logits / T)[1], in float64 (T = 1 gives the uncalibrated score)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return _sigmoid(_margins(logits) / temperature)


def score_logit(scores: np.ndarray | float) -> np.ndarray:
    """log(s / (1 - s)): the calibrated margin, the scale on which the referral band is symmetric."""
    s = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(s) - np.log1p(-s)


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> float:
    """Binary ECE: sum over equal-width bins of [0, 1] of (cases in bin / N) * |positive rate - mean score|.

    Computed on the positive-class probability (the score a clinic sees), not on the top-label confidence of
    Guo et al.; bin k holds scores in [k/B, (k+1)/B), the last bin also holding 1.0.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.size == 0:
        raise ValueError("ECE needs at least one case")
    index = np.minimum((scores * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, labels, bins) - np.bincount(index, scores, bins))
    return float(gap[count > 0].sum() / labels.size)


def referral_band(scores: np.ndarray, threshold: float, rate: float) -> tuple[float, float]:
    """The score interval around `threshold` holding the `rate` fraction of `scores` closest to it.

    Closeness is measured in logit space, |logit(score) - logit(threshold)|, so the band is symmetric in the
    model's margin and not squeezed where scores pile up near 0 or 1. With k = round(rate * N) the band's
    half-width is the k-th smallest distance, so (ties aside) exactly k of the given cases fall inside it.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"referral rate must be in [0, 1), got {rate}")
    scores = np.asarray(scores, dtype=np.float64)
    k = round(rate * scores.size)
    if k == 0:
        return float(threshold), float(threshold)
    centre = float(score_logit(threshold))
    radius = float(np.sort(np.abs(score_logit(scores) - centre))[k - 1])
    return float(_sigmoid(np.float64(centre - radius))), float(_sigmoid(np.float64(centre + radius)))


def in_band(score: float | np.ndarray, band: tuple[float, float] | list[float]) -> bool | np.ndarray:
    """True where a score lies inside the referral band (bounds included): refer the case to a reader."""
    low, high = band
    result = (np.asarray(score) >= low) & (np.asarray(score) <= high)
    return bool(result) if result.ndim == 0 else result


@dataclass(frozen=True)
class ScoreHealth:
    """Whether calibrated scores and the referral band can do their job, with one-line warnings where not."""

    spread: float  # 5th-95th percentile range of calibrated validation scores
    band_width: float
    val_referred: float
    refer_rate: float

    @property
    def collapsed(self) -> bool:
        return self.spread < MIN_SCORE_SPREAD

    @property
    def band_degenerate(self) -> bool:
        return self.refer_rate > 0 and self.band_width < MIN_BAND_WIDTH

    @property
    def off_rate(self) -> bool:
        """The band holds a share of validation far from the one asked: scores tie at its edges."""
        return abs(self.val_referred - self.refer_rate) > ASKED_SLACK

    def warnings(self) -> list[str]:
        found = []
        if self.collapsed:
            found.append(f"calibrated validation scores have collapsed: 90% of them lie within {self.spread:.4f} "
                         f"(under {MIN_SCORE_SPREAD}), so a score says little about a case and does not read as a "
                         "probability")
        if self.band_degenerate:
            found.append(f"the referral band is {self.band_width:.4f} wide (under {MIN_BAND_WIDTH}): the cases it "
                         "refers differ from the rest by score differences too small to mean anything; do not rely "
                         "on it")
        return found

    def as_dict(self) -> dict[str, object]:
        return {"spread_p5_p95": self.spread, "band_width": self.band_width, "collapsed": self.collapsed,
                "band_degenerate": self.band_degenerate, "warnings": self.warnings()}


def score_health(val_scores: np.ndarray, band: tuple[float, float], refer_rate: float) -> ScoreHealth:
    """Judge calibrated validation scores and the band drawn from them (see MIN_SCORE_SPREAD, MIN_BAND_WIDTH)."""
    scores = np.asarray(val_scores, dtype=np.float64)
    low, high = np.quantile(scores, [0.05, 0.95])
    return ScoreHealth(spread=float(high - low), band_width=float(band[1] - band[0]),
                       val_referred=float(np.mean(in_band(scores, band))), refer_rate=refer_rate)
