"""What a budget is judged on, the no-feasible-trial explanation, and the final re-measurement's retake."""

from types import SimpleNamespace

from nas.hardware import Measurement
from nas.hardware._measurement import Disturbance
from nas.search.constraints import budget_latency_ms
from nas.search.feasibility import explain_infeasible, remeasure


def _m(p50, p95, gave_up=False):
    disturbance = Disturbance(reference_ms=(1.0, 3.0), quiet_reference_ms=1.0, slowdown=3.0, spread=p95 / p50,
                              load_avg=6.0, disturbed=gave_up, gave_up=gave_up, reason="busy" if gave_up else None)
    return Measurement(p50_ms=p50, p95_ms=p95, p99_ms=p95, mean_ms=p50, cv=0.1, runs=100, seconds=1.0,
                       throughput_ips=None, throughput_batch=None, peak_memory_mb=1.0, model_bytes=1,
                       backend="onnxruntime", runtime_version="x", device="cpu", precision="fp32", batch=1,
                       threads=2, method="measured", load_avg=6.0, disturbance=disturbance)


def test_budget_on_p95_unless_never_quiet():
    assert budget_latency_ms(_m(0.4, 0.9)) == 0.9
    assert budget_latency_ms(_m(0.4, 16.6, gave_up=True)) == 0.4


def test_no_feasible_trial_is_explained():
    results = [SimpleNamespace(trial=0, lat=1.8, sens=0.9), SimpleNamespace(trial=1, lat=1.2, sens=0.7)]
    why = explain_infeasible(results, lambda r: {"max_latency_ms": r.lat - 1.0, "min_sensitivity": 0.8 - r.sens})
    assert why["front"] == "unconstrained"
    assert why["constraints"]["max_latency_ms"]["nearest_trial"] == 1
    assert abs(why["constraints"]["max_latency_ms"]["misses_by"] - 0.2) < 1e-9
    assert why["constraints"]["min_sensitivity"]["nearest_trial"] == 1
    assert "max_latency_ms" in why["message"] and "trial 1" in why["message"]
    assert explain_infeasible([], lambda r: {})["front"] == "empty"


def test_remeasure_retakes_before_dropping():
    search = _m(0.4, 0.8)
    timings = iter([_m(0.5, 3.0), _m(0.4, 0.9)])
    m, note = remeasure(lambda: next(timings), search, 1.0)
    assert m.p95_ms == 0.9 and "retaken" in note
    timings = iter([_m(0.5, 3.0), _m(0.5, 2.0)])
    m, note = remeasure(lambda: next(timings), search, 1.0)
    assert m.p95_ms == 2.0 and "twice" in note
    m, note = remeasure(lambda: _m(0.4, 0.7), search, 1.0)
    assert note is None and m.p95_ms == 0.7
