"""A search with a device-fitted latency predictor does not time candidates it puts far over the latency budget,
and labels the latency it records for them as estimated; a predictor from another profile is refused."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from conftest import QUICK_PROFILE, SMALL_XRAY

from nas.errors import ConfigError
from nas.hardware.predictor import KINDS, CalibrationPoint, KernelFeatures, PredictorProvenance, fit_predictor
from nas.search.runner import SearchConfig, prepare, run_search


def predictor_file(tmp_path, per_kernel_ms: float, hardware: str = "cpu-quick"):
    """A predictor fitted on made-up points where every kernel, of any kind, costs `per_kernel_ms`."""
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, (20, len(KINDS)))
    points = [CalibrationPoint(f"p{n}", KernelFeatures({kind: (float(c), 0.0, 0.0) for kind, c in zip(KINDS, row)}),
                               per_kernel_ms * float(row.sum())) for n, row in enumerate(counts)]
    provenance = PredictorProvenance(hardware=hardware, device="test", runtime="onnxruntime", runtime_version="test",
                                     precision="fp32", threads=1, batch=1, points=len(points), fitted_at="2026-12-07")
    predictor = fit_predictor(points, provenance=provenance)
    assert predictor.coefficients["conv.count"] == pytest.approx(per_kernel_ms, rel=0.05)
    return predictor.save(tmp_path / f"predictor-{per_kernel_ms:g}.json")


def search(tmp_path, predictor, study: str) -> optuna.Study:
    config = SearchConfig(space="xray-tiny", data=str(SMALL_XRAY), hardware=str(QUICK_PROFILE), study=study,
                          results=tmp_path / "results", trials=2, epochs=1, progress=False, baselines=False,
                          max_latency_ms=1.0, latency_predictor=str(predictor))
    return run_search(config, prepare(config)).study


@pytest.mark.slow
def test_candidates_predicted_far_over_budget_are_not_timed(tmp_path):
    slow = search(tmp_path, predictor_file(tmp_path, 10.0), "slow")  # every candidate: hundreds of ms
    assert [t.state for t in slow.trials] == [optuna.trial.TrialState.PRUNED] * 2
    for t in slow.trials:
        assert "predicted p50" in t.user_attrs["infeasible"] and "not measured" in t.user_attrs["infeasible"]
        m = t.user_attrs["measurement"]
        assert m["method"] == "estimated" and m["backend"] == "estimate" and m["runs"] == 0
        assert "nas latency predictor" in m["runtime_version"]

    fast = search(tmp_path, predictor_file(tmp_path, 1e-4), "fast")  # within budget: timed as usual
    assert [t.user_attrs["measurement"]["method"] for t in fast.trials] == ["measured"] * 2
    assert not any("predicted" in t.user_attrs.get("infeasible", "") for t in fast.trials)


def test_a_predictor_fitted_on_another_profile_is_refused(tmp_path):
    config = SearchConfig(space="xray-tiny", data=str(SMALL_XRAY), hardware=str(QUICK_PROFILE), study="other",
                          results=tmp_path / "results", trials=1, epochs=1, progress=False, baselines=False,
                          latency_predictor=str(predictor_file(tmp_path, 1.0, hardware="jetson-orin-nano")))
    with pytest.raises(ConfigError, match="fitted on profile 'jetson-orin-nano'.*nas calibrate --hardware cpu-quick"):
        prepare(config)
