"""nas.metrics is plain NumPy so it can run anywhere; these tests hold it to scikit-learn's definitions."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from nas.metrics import binary_metrics, roc_auc, threshold_for_sensitivity


def _random_case(seed, n=300, decimals=1):
    """Scores rounded to `decimals` so many positives and negatives tie, the case AUC implementations get wrong."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) * 0.6 + labels * 0.3, decimals)
    return labels, scores


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_roc_auc_matches_sklearn_with_ties(seed, decimals):
    labels, scores = _random_case(seed, decimals=decimals)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_fixed_case():
    """Hand-countable: 4 positive/negative pairs, 3 ordered right, 1 tied (counts half) -> 3.5 / 4."""
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    assert roc_auc(labels, scores) == pytest.approx(0.875)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_roc_auc_extremes():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    assert roc_auc(labels, scores) == 1.0
    assert roc_auc(labels, -scores) == 0.0


@pytest.mark.parametrize("labels", [np.ones(5, int), np.zeros(5, int)])
def test_roc_auc_needs_both_classes(labels):
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc(labels, np.linspace(0, 1, 5))


def _sensitivity(labels, scores, threshold):
    return ((scores >= threshold) & (labels == 1)).sum() / (labels == 1).sum()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_threshold_is_the_highest_reaching_target(seed, target):
    labels, scores = _random_case(seed, n=int(200 + 37 * seed), decimals=2)
    t = threshold_for_sensitivity(labels, scores, target)
    assert _sensitivity(labels, scores, t) >= target - 1e-12
    assert _sensitivity(labels, scores, np.nextafter(t, np.inf)) < target


def test_threshold_exact_fraction():
    """10 positives and target 0.9: exactly 9 must be caught, even though 0.9 * 10 is not exactly 9 in floats."""
    scores = np.arange(10, dtype=float)
    labels = np.ones(10, int)
    assert threshold_for_sensitivity(labels, scores, 0.9) == 1.0


def test_threshold_needs_positives():
    with pytest.raises(ValueError, match="no positive"):
        threshold_for_sensitivity(np.zeros(4, int), np.linspace(0, 1, 4), 0.9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.75])
def test_binary_metrics_match_confusion_matrix(seed, threshold):
    labels, scores = _random_case(seed, decimals=2)
    m = binary_metrics(labels, scores, threshold)
    tn, fp, fn, tp = confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1]).ravel()
    assert m["accuracy"] == pytest.approx((tp + tn) / (tp + tn + fp + fn))
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["threshold"] == threshold


def test_binary_metrics_at_threshold_for_sensitivity():
    """The two functions compose: metrics at the chosen threshold report at least the target sensitivity."""
    labels, scores = _random_case(7, decimals=2)
    t = threshold_for_sensitivity(labels, scores, 0.9)
    assert binary_metrics(labels, scores, t)["sensitivity"] >= 0.9


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01])
def test_threshold_target_outside_unit_interval(target):
    with pytest.raises(ValueError, match="target sensitivity must be in"):
        threshold_for_sensitivity(np.array([0, 1, 1]), np.array([0.1, 0.5, 0.9]), target)


def test_bootstrap_interval_on_fixed_cases():
    from nas.metrics import bootstrap_ci

    rng = np.random.default_rng(0)
    labels = np.array([0] * 200 + [1] * 200)
    perfect = bootstrap_ci(labels, labels.astype(float), 0.5, resamples=200)
    assert perfect["auc"] == [1.0, 1.0] and perfect["sensitivity"] == [1.0, 1.0]
    noise = rng.random(400)
    ci = bootstrap_ci(labels, noise, 0.5, resamples=500)
    assert ci["auc"][0] < 0.5 < ci["auc"][1]  # chance-level scores: the interval holds 0.5
    small = bootstrap_ci(labels[::8], noise[::8], 0.5, resamples=500)
    assert small["auc"][1] - small["auc"][0] > ci["auc"][1] - ci["auc"][0]  # fewer cases, wider interval
    assert bootstrap_ci(labels, noise, 0.5, resamples=100) == bootstrap_ci(labels, noise, 0.5, resamples=100)


def _sklearn_bootstrap(labels, scores, threshold, resamples, seed=0):
    """The definition, one resample at a time with scikit-learn: cases drawn with replacement, resamples that lose a
    class skipped, 2.5th and 97.5th percentiles."""
    rng = np.random.default_rng(seed)
    draws = {"auc": [], "accuracy": [], "sensitivity": [], "specificity": []}
    for _ in range(resamples):
        index = rng.integers(0, labels.size, labels.size)
        y, s = labels[index], scores[index]
        if y.all() or not y.any():
            continue
        tn, fp, fn, tp = confusion_matrix(y, (s >= threshold).astype(int), labels=[0, 1]).ravel()
        for key, value in (("auc", roc_auc_score(y, s)), ("accuracy", (tp + tn) / y.size),
                           ("sensitivity", tp / (tp + fn)), ("specificity", tn / (tn + fp))):
            draws[key].append(value)
    return {k: [np.percentile(v, 2.5), np.percentile(v, 97.5)] for k, v in draws.items()}


@pytest.mark.parametrize("n, decimals", [(16, 1), (120, 2)])
def test_bootstrap_matches_scikit_learn_resample_by_resample(n, decimals):
    """Small and tied cases, where resamples lose the rare class and ties decide the AUC."""
    from nas.metrics import bootstrap_ci

    labels, scores = _random_case(3, n=n, decimals=decimals)
    labels[:2] = [1, 0]  # both classes present
    ours = bootstrap_ci(labels, scores, 0.5, resamples=60, seed=4)
    reference = _sklearn_bootstrap(labels, scores, 0.5, resamples=60, seed=4)
    for key, interval in reference.items():
        assert ours[key] == pytest.approx(interval, abs=1e-12), key


def test_bootstrap_keeps_an_interval_where_scipy_would_give_nan():
    """20 cases with 2 positive: about one resample in eight has no positive case (the reason for not using
    scipy.stats.bootstrap, whose percentile interval is then NaN)."""
    from nas.metrics import bootstrap_ci

    labels = np.array([1, 1] + [0] * 18)
    scores = np.linspace(0, 1, 20)
    ci = bootstrap_ci(labels, scores, 0.5, resamples=400)
    assert all(np.isfinite(v).all() and 0 <= v[0] <= v[1] <= 1 for v in ci.values())
    assert ci["auc"] == [0.0, 0.0]  # both positives score lowest: every defined resample ranks them last
