"""Temperature scaling, ECE and the referral band: on known cases and on the exported model's validation logits."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from conftest import run_nas
from nas.clinical.calibration import (
    MIN_BAND_WIDTH, MIN_SCORE_SPREAD, calibrated_scores, expected_calibration_error, fit_temperature, in_band,
    referral_band, score_health,
)
from nas.data import load_dataset
from nas.export import onnx_predict, onnx_session
from nas.tasks.xray import preprocess

pytestmark = pytest.mark.slow


def _validation(export):
    """The deployed file's logits and the labels of the bundled validation split, as `nas export` computed them."""
    io = json.loads((export / "io.json").read_text())
    val = load_dataset(None).split("val")
    logits = onnx_predict(onnx_session(export / io["file"]), preprocess(val.images, io["input_shape"][2]).numpy())
    return io, logits, val.labels


def test_ece_of_a_hand_made_case():
    # bin [1/15, 2/15): two cases scored 0.1, one positive: |0.5 - 0.1| * 2/4; bin [13/15, 14/15): |1.0 - 0.9| * 2/4
    labels, scores = np.array([0, 1, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(labels, scores) == pytest.approx(0.25)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0  # 1.0 lands in the last bin


def test_ece_agrees_with_scikit_learn_reliability_bins():
    rng = np.random.default_rng(0)
    scores = rng.random(2000)
    labels = (rng.random(2000) < scores ** 2).astype(int)
    true, predicted = calibration_curve(labels, scores, n_bins=15, strategy="uniform")
    counts = np.bincount(np.minimum((scores * 15).astype(int), 14), minlength=15)
    expected = float((counts[counts > 0] / scores.size * np.abs(true - predicted)).sum())
    assert expected_calibration_error(labels, scores, bins=15) == pytest.approx(expected, abs=1e-12)


def test_temperature_is_the_maximum_likelihood_scale(exported_model):
    io, logits, labels = _validation(exported_model)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(io["calibration"]["temperature"], rel=1e-6)
    margins = (logits[:, 1] - logits[:, 0]).astype(np.float64)[:, None]
    fitted = LogisticRegression(fit_intercept=False, C=1e12, tol=1e-10, max_iter=1000).fit(margins, labels)
    assert temperature == pytest.approx(1 / fitted.coef_[0, 0], rel=1e-3)


def test_temperature_scaling_lowers_validation_ece(exported_model):
    io, logits, labels = _validation(exported_model)
    before = expected_calibration_error(labels, calibrated_scores(logits, 1.0))
    after = expected_calibration_error(labels, calibrated_scores(logits, io["calibration"]["temperature"]))
    assert after < before / 2
    card = json.loads((exported_model / "model_card.json").read_text())
    assert card["calibration"]["ece"]["val"] == pytest.approx({"before": before, "after": after}, rel=1e-6)
    assert set(card["calibration"]["ece"]["test"]) == {"before", "after"}
    assert "## Calibration and referral" in (exported_model / "model_card.md").read_text()


def test_referral_band_refers_the_asked_fraction_of_validation(exported_model):
    io, logits, _ = _validation(exported_model)
    scores = calibrated_scores(logits, io["calibration"]["temperature"])
    threshold = io["threshold"]
    assert io["referral_band"] == pytest.approx(list(referral_band(scores, threshold, io["refer_rate"])))
    for rate in (0.05, 0.10, 0.25):
        low, high = referral_band(scores, threshold, rate)
        assert low <= threshold <= high
        assert in_band(scores, (low, high)).mean() == pytest.approx(rate, abs=0.01)
    assert referral_band(scores, threshold, 0.0) == (threshold, threshold)
    with pytest.raises(ValueError, match="referral rate must be in"):
        referral_band(scores, threshold, 1.0)


def test_export_records_calibration_referral_and_drift_reference(exported_model):
    io = json.loads((exported_model / "io.json").read_text())
    assert io["calibration"]["method"] == "temperature" and io["calibration"]["temperature"] > 0
    assert io["refer_rate"] == 0.10 and io["modality"] == ["CR", "DX", "DR"]
    assert io["mean"] == 0.5 and io["std"] == 0.5 and io["input_shape"] == ["batch", 1, 28, 28]
    histogram = io["val_scores_histogram"]
    assert histogram["edges"][0] == 0.0 and histogram["edges"][-1] == 1.0 and np.all(np.diff(histogram["edges"]) > 0)
    assert sum(histogram["counts"]) == 524 and len(histogram["counts"]) == len(histogram["edges"]) - 1
    card = json.loads((exported_model / "model_card.json").read_text())
    referral = card["referral"]
    assert referral["band"] == io["referral_band"] and referral["val_referred"] == pytest.approx(0.10, abs=0.01)
    kept = referral["test_not_referred"]
    assert kept["cases"] == round(624 * (1 - referral["test_referred"]))
    assert 0 <= kept["sensitivity"] <= 1 and 0 <= kept["specificity"] <= 1


def test_export_judges_its_own_scores(exported_model):
    """One epoch on 28x28 images leaves a model whose calibrated scores bunch together (issue 19's smoke export):
    the card must say so from the same scores this test recomputes, and not present the band as working."""
    io, logits, _ = _validation(exported_model)
    scores = calibrated_scores(logits, io["calibration"]["temperature"])
    spread = float(np.quantile(scores, 0.95) - np.quantile(scores, 0.05))
    card = json.loads((exported_model / "model_card.json").read_text())
    health = card["calibration"]["health"]
    low, high = io["referral_band"]
    assert health["spread_p5_p95"] == pytest.approx(spread) and health["band_width"] == pytest.approx(high - low)
    assert health["collapsed"] == (spread < MIN_SCORE_SPREAD)
    assert health["band_degenerate"] == (high - low < MIN_BAND_WIDTH)
    text = (exported_model / "model_card.md").read_text()
    assert ("**Referral band not usable**" in text) == health["band_degenerate"]
    assert ("can be read as a probability" in text) != health["collapsed"]


def test_a_trained_model_has_spread_scores_and_a_working_band(trained_export):
    health = json.loads((trained_export / "model_card.json").read_text())["calibration"]["health"]
    assert health["warnings"] == [] and health["spread_p5_p95"] > MIN_SCORE_SPREAD


def test_refer_rate_option(exported_model, tmp_path):
    cwd = tmp_path / "study"
    shutil.copytree(exported_model.parent / "results", cwd / "results")
    card = json.loads((exported_model / "model_card.json").read_text())
    args = ("export", "--study", card["study"], "--trial", str(card["trial"]), "--out", "wide")
    wide = run_nas(*args, "--refer-rate", "0.3", "--json", cwd=cwd)
    assert wide.returncode == 0, wide.stderr
    assert json.loads(wide.stdout)["referral"]["val_referred"] == pytest.approx(0.3, abs=0.01)
    for warning in json.loads(wide.stdout)["calibration"]["health"]["warnings"]:
        assert f"warning: {warning}" in wide.stderr  # said at export, on stderr: stdout stays one JSON document
    assert json.loads((cwd / "wide" / "io.json").read_text())["refer_rate"] == 0.3
    bad = run_nas(*args, "--refer-rate", "1.5", cwd=cwd)
    assert bad.returncode == 2 and "--refer-rate must be in [0, 1)" in bad.stderr


def test_collapsed_scores_and_a_degenerate_band_are_flagged():
    """The smoke export of issue 19: temperature 7.8 left every score in 0.7416-0.7475, band 0.743-0.743."""
    scores = np.random.default_rng(0).uniform(0.7416, 0.7475, 524)
    band = referral_band(scores, 0.7431, 0.10)
    health = score_health(scores, band, 0.10)
    assert health.collapsed and health.band_degenerate
    spread, band_warning = health.warnings()
    assert "collapsed: 90% of them lie within 0.005" in spread and "does not read as a probability" in spread
    assert band_warning.startswith(f"the referral band is {band[1] - band[0]:.4f} wide (under 0.01)")
    assert health.as_dict()["warnings"] == [spread, band_warning]


def test_spread_scores_and_a_working_band_pass():
    logits = np.random.default_rng(1).normal(0, 2, (524, 1)) * np.array([[-1.0, 1.0]])
    scores = calibrated_scores(logits, 1.0)
    health = score_health(scores, referral_band(scores, 0.5, 0.10), 0.10)
    assert not health.collapsed and not health.band_degenerate and not health.off_rate
    assert health.warnings() == []
    assert score_health(scores, (0.5, 0.5), 0.0).warnings() == []  # no band asked: none to judge
