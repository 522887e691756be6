"""The one constraint model: the same fixed cases judged alike by the trial, the runner, the report and `nas pick`."""

from __future__ import annotations

import pytest

from nas.errors import ConfigError
from nas.hardware import Measurement
from nas.report.html import _breaks
from nas.report.pick import Constraints as PickConstraints
from nas.search.constraints import Constraints, constraint_values, result_constraints
from nas.search.result import TrialResult
from nas.spec import Spec, TrainingSpec

LIMITS = Constraints(max_latency_ms=2.0, min_sensitivity=0.9)
# (p95 ms, validation sensitivity) -> the constraints broken; both limits are inclusive.
CASES = [((1.0, 0.95), set()), ((2.0, 0.9), set()), ((2.5, 0.95), {"max_latency_ms"}),
         ((1.0, 0.85), {"min_sensitivity"}), ((3.0, 0.5), {"max_latency_ms", "min_sensitivity"})]


def result(p95: float, sensitivity: float) -> TrialResult:
    m = Measurement(p50_ms=p95 / 2, p95_ms=p95, p99_ms=p95, mean_ms=p95 / 2, cv=0.01, runs=30, seconds=0.1,
                    throughput_ips=None, throughput_batch=None, peak_memory_mb=1.0, model_bytes=100,
                    backend="onnxruntime", runtime_version="1", device="cpu", precision="fp32", batch=1, threads=1,
                    method="measured", load_avg=0.0)
    spec = Spec(family="dsconv", arch={}, input_size=28, in_channels=1, num_classes=2,
                training=TrainingSpec(lr=0.01, weight_decay=0.0, epochs=1, augment=0.0))
    return TrialResult(trial=0, spec=spec, params=1, macs=1, measurement=m,
                       metrics={"val": {"auc": 0.9, "sensitivity": sensitivity}})


@pytest.mark.parametrize(("values", "broken"), CASES)
def test_trial_runner_report_and_pick_agree(values, broken):
    p95, sensitivity = values
    judged = constraint_values(LIMITS, p95_ms=p95, sensitivity=sensitivity)
    assert {k for k, v in judged.items() if v > 0} == broken
    r = result(p95, sensitivity)
    assert result_constraints(LIMITS, r) == judged  # what the runner gives Optuna and finalize filters on
    assert len(_breaks(r, LIMITS.as_dict())) == len(broken)  # the report
    member = {"latency": r.measurement.model_dump(), "metrics": {"val": r.metrics["val"]}, "params": 1, "macs": 1}
    pick = PickConstraints(**LIMITS.as_dict()).broken(member)
    assert pick == ["--" + k.replace("_", "-") for k in judged if k in broken]  # `nas pick`


def test_phase_one_judges_latency_only():
    assert constraint_values(LIMITS, p95_ms=2.5, sensitivity=None) == {"max_latency_ms": 0.5}
    assert constraint_values(Constraints(), p95_ms=99.0, sensitivity=0.0) == {}


@pytest.mark.parametrize("limits", [{"max_latency_ms": 0}, {"min_sensitivity": 1.5}])
def test_impossible_limits_from_the_command_line_are_refused(limits):
    with pytest.raises(ConfigError, match="must be"):
        PickConstraints(**limits)


def test_stored_limits_are_read_as_they_are():
    """A report reads what a study stored (a floor of 0 included), without judging the user's input again."""
    assert constraint_values(Constraints(min_sensitivity=0.0), p95_ms=1.0, sensitivity=0.0) == {"min_sensitivity": 0}
