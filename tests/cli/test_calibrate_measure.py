"""`nas calibrate --measure N --holdout M`: a predictor fitted on candidates timed here, judged on held-out ones."""

from __future__ import annotations

import json

from conftest import QUICK_PROFILE, run_nas
from nas.hardware.predictor import FEATURES, LatencyPredictor


def test_a_small_measured_calibration_fits_scores_and_saves(tmp_path):
    proc = run_nas("calibrate", "--hardware", str(QUICK_PROFILE), "--space", "xray-tiny", "--measure", "6",
                   "--holdout", "3", "--noise-repeats", "2", "--sessions", "2", "--json",
                   "--results", str(tmp_path / "results"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout holds the one document; progress went to stderr
    assert "measured 9/9" in proc.stderr and "re-measured 2/2" in proc.stderr
    assert (doc["hardware"], doc["runtime"], doc["precision"], doc["space"], doc["image_size"]) == (
        "cpu-quick", "onnxruntime", "fp32", "xray-tiny", 28)
    assert (doc["measured"], doc["holdout"], doc["method"], doc["batch"], doc["sessions"]) == (
        6, 3, "measured", 1, 2)
    assert doc["runtime_version"].startswith("onnxruntime ")
    rows = doc["candidates"]
    assert [r["role"] for r in rows] == ["fit"] * 6 + ["holdout"] * 3
    assert len({r["summary"] for r in rows}) == 9  # distinct candidates
    for r in rows:
        assert r["measured_ms"] > 0 and r["predicted_ms"] >= 0
        assert abs(r["relative_error"] - (r["predicted_ms"] / r["measured_ms"] - 1)) < 1e-9
    assert [r["remeasured_ms"] is not None for r in rows] == [False] * 6 + [True, True, False]
    score = doc["holdout_score"]
    held = [r for r in rows if r["role"] == "holdout"]
    assert score["within_10pct"] == sum(abs(r["relative_error"]) <= 0.1 for r in held) / 3
    assert -1 <= score["spearman"] <= 1 and score["median_abs_error"] >= 0
    noise = doc["noise_ceiling"]
    assert noise["pairs"] == 2 and 0 <= noise["within_10pct"] <= 1
    path = tmp_path / "results" / "calibration" / "cpu-quick-onnxruntime-fp32.json"
    assert doc["predictor"] == str(path)
    saved = LatencyPredictor.load(path)
    assert saved.coefficients == doc["coefficients"] and set(saved.coefficients) == set(FEATURES)
    assert all(v >= 0 for v in saved.coefficients.values())
    assert (saved.provenance.points, saved.provenance.hardware, saved.provenance.threads,
            saved.provenance.sessions) == (6, "cpu-quick", doc["threads"], 2)


def test_a_measured_calibration_needs_both_counts_and_a_device(tmp_path):
    half = run_nas("calibrate", "--hardware", str(QUICK_PROFILE), "--measure", "6", cwd=tmp_path)
    assert half.returncode == 2 and "--measure N and --holdout M together" in half.stderr
    estimated = run_nas("calibrate", "--hardware", "jetson-orin-nano", "--measure", "6", "--holdout", "3",
                        "--allow-estimate", cwd=tmp_path)
    assert estimated.returncode == 2 and "fitted on measurements of the device" in estimated.stderr
    precision = run_nas("calibrate", "--hardware", str(QUICK_PROFILE), "--measure", "6", "--holdout", "3",
                        "--precision", "fp16", cwd=tmp_path)
    assert precision.returncode == 2 and "fp32, int8" in precision.stderr
    sessions = run_nas("calibrate", "--hardware", str(QUICK_PROFILE), "--measure", "6", "--holdout", "3",
                       "--sessions", "0", cwd=tmp_path)
    assert sessions.returncode == 2 and "--sessions must be 1 or more" in sessions.stderr
