"""`nas pick` on a fixed, hand-made front whose answers are worked out in the comments."""

from __future__ import annotations

import copy
import json

import pytest

from nas.cli.main import main
from nas.errors import ConfigError, StudyError
from nas.report.pick import Constraints, NoFeasibleTrial, candidates, explain, pick

OBJECTIVES = [{"name": "auc", "direction": "maximize"}, {"name": "latency_p95", "direction": "minimize"}]


def entry(trial: int, auc: float, p95: float, sens: float, test_auc: float, baseline: str | None = None) -> dict:
    def metric(auc: float, sens: float) -> dict:
        return {"auc": auc, "accuracy": 0.8, "sensitivity": sens, "specificity": 0.5, "threshold": 0.4}

    return {
        "trial": trial, "is_baseline": baseline is not None, "baseline": baseline, "summary": f"model {trial}",
        "spec": {"family": "dsconv"}, "params": 1000 * trial, "macs": 10_000 * trial,
        "metrics": {"val": metric(auc, sens), "test": metric(test_auc, sens)},
        "latency": {"p50_ms": p95 / 2, "p95_ms": p95, "p99_ms": p95 * 1.2, "backend": "onnxruntime",
                    "runtime_version": "onnxruntime 1.32.0", "device": "test CPU", "precision": "fp32", "batch": 1,
                    "threads": 2, "method": "measured"},
    }


# The front, most accurate to fastest; test AUC runs the other way, so a pick that peeked at test would differ.
DOC = {
    "schema_version": 1, "study": "hand", "task": "xray", "hardware": "cpu", "objectives": OBJECTIVES,
    "members": [entry(3, 0.95, 2.0, 0.96, 0.70), entry(5, 0.93, 1.0, 0.97, 0.75), entry(8, 0.90, 0.5, 0.95, 0.80),
                entry(9, 0.80, 0.2, 0.99, 0.99)],
    "baselines": [entry(0, 0.85, 3.0, 0.98, 0.90, baseline="resnet18")],  # off the front, still a candidate
}
MEMBERS = candidates(DOC)


def chosen(rule: str = "auc", **limits: float) -> tuple[int, int | None, dict[str, int]]:
    c = pick(MEMBERS, OBJECTIVES, rule=rule, constraints=Constraints(**limits))
    return c.chosen["trial"], c.runner_up and c.runner_up["trial"], {k: m["trial"] for k, m in c.binding.items()}


def test_candidates_are_members_then_baselines_off_the_front():
    assert [m["trial"] for m in MEMBERS] == [3, 5, 8, 9, 0]


def test_each_rule_without_constraints():
    assert chosen("auc") == (3, 5, {})
    assert chosen("latency") == (9, 8, {})
    # knee, objectives scaled over all five: distances t3 0.64, t5 0.32, t8 0.35, t9 1.0, t0 1.20; without t5: t8
    assert chosen("knee") == (5, 8, {})


def test_a_latency_budget_binds():
    assert chosen("auc", max_latency_ms=1.5) == (5, 8, {"--max-latency-ms": 3})
    assert chosen("auc", max_latency_ms=2.0) == (3, 5, {})  # the budget is inclusive: p95 2.0 meets 2.0


def test_a_sensitivity_floor_binds_on_validation_sensitivity():
    # sensitivity >= 0.97 leaves t5 (AUC 0.93), the baseline t0 (0.85) and t9 (0.80)
    assert chosen("auc", min_sensitivity=0.97) == (5, 0, {"--min-sensitivity": 3})


def test_both_constraints_bind_and_each_is_named():
    # p95 <= 0.9 leaves t8, t9; sensitivity >= 0.97 then leaves t9. Dropping either lets a better one back in.
    assert chosen("auc", max_latency_ms=0.9, min_sensitivity=0.97) == (
        9, None, {"--max-latency-ms": 5, "--min-sensitivity": 8})


def test_test_metrics_never_change_the_choice():
    shuffled = copy.deepcopy(MEMBERS)
    for m, test_auc in zip(shuffled, (0.99, 0.10, 0.50, 0.20, 0.95)):
        m["metrics"]["test"]["auc"] = test_auc
    for rule in ("auc", "latency", "knee"):
        original, peeked = pick(MEMBERS, OBJECTIVES, rule=rule), pick(shuffled, OBJECTIVES, rule=rule)
        assert (peeked.chosen["trial"], peeked.runner_up["trial"]) == (original.chosen["trial"],
                                                                        original.runner_up["trial"])


def test_ties_go_to_the_faster_then_the_earlier_trial():
    tied = [entry(4, 0.9, 1.0, 0.96, 0.5), entry(2, 0.9, 0.7, 0.96, 0.5), entry(1, 0.9, 0.7, 0.96, 0.5)]
    assert pick(tied, OBJECTIVES, rule="auc").chosen["trial"] == 1
    assert pick(tied, OBJECTIVES, rule="latency").runner_up["trial"] == 2


def test_explanation_names_rule_binding_constraint_and_the_trade():
    lines = explain(pick(MEMBERS, OBJECTIVES, rule="auc", constraints=Constraints(max_latency_ms=1.5)), "hand")
    text = "\n".join(lines)
    assert lines[0] == "picked trial 5 (front member): model 5"
    assert "among 3 of 5 candidates that meet p95 <= 1.5 ms" in text
    assert "binding: --max-latency-ms 1.5; without it the pick would be trial 3" in text
    assert "0.0200 AUC lower and 1.000 ms faster at p95 than trial 3" in text  # what the budget cost
    assert "next candidate: trial 8" in text and "0.0300 AUC higher and 0.500 ms slower at p95 than trial 8" in text
    assert "nas export --study hand --trial 5" in text
    assert "at threshold 0.4000 on the uncalibrated score" in text  # the card's calibrated one is a different scale


def test_estimated_latency_is_flagged():
    estimated = copy.deepcopy(MEMBERS)
    estimated[0]["latency"]["method"] = "estimated"
    assert any("estimate" in line for line in explain(pick(estimated, OBJECTIVES), "hand"))


def test_nothing_feasible_lists_the_closest_misses():
    with pytest.raises(NoFeasibleTrial) as caught:
        pick(MEMBERS, OBJECTIVES, rule="latency", constraints=Constraints(min_sensitivity=0.995))
    # relative shortfalls: t9 0.5%, t0 1.5%, t5 2.5%
    assert [m["trial"] for m in caught.value.closest] == [9, 0, 5]
    assert caught.value.exit_code == 1
    assert str(caught.value).startswith(
        "no trial meets validation sensitivity >= 0.995; closest: trial 9 (p95 0.200 ms")


def test_bad_limits_and_rules_are_refused():
    with pytest.raises(ConfigError, match=r"--max-latency-ms must be positive, got 0"):
        Constraints(max_latency_ms=0)
    with pytest.raises(ConfigError, match=r"--min-sensitivity must be in \(0, 1\], got 1.5"):
        Constraints(min_sensitivity=1.5)
    with pytest.raises(ConfigError, match="unknown pick rule 'fast'.*valid: auc, knee, latency"):
        pick(MEMBERS, OBJECTIVES, rule="fast")
    with pytest.raises(StudyError, match="front is empty"):
        pick([], OBJECTIVES)


@pytest.fixture
def results(tmp_path):
    (tmp_path / "hand").mkdir()
    (tmp_path / "hand" / "pareto.json").write_text(json.dumps(DOC))
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / "settings.json").write_text("{}")
    return tmp_path


def nas(results, *args):
    return main(["pick", "--results", str(results), *args])


def test_cli_prints_the_choice_and_exits_0(results, capsys):
    assert nas(results, "--study", "hand", "--max-latency-ms", "1.5") == 0
    out = capsys.readouterr().out
    assert out.startswith("picked trial 5 (front member)") and "binding: --max-latency-ms 1.5" in out


def test_cli_json_is_one_document(results, capsys):
    assert nas(results, "--study", "hand", "--prefer", "latency", "--min-sensitivity", "0.97", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["chosen"]["trial"] == 9 and doc["runner_up"]["trial"] == 5 and doc["binding"] == {}
    assert doc["constraints"] == {"max_latency_ms": None, "min_sensitivity": 0.97} and doc["feasible"] == 3


def test_cli_exits_1_with_the_closest_when_nothing_fits(results, capsys):
    assert nas(results, "--study", "hand", "--max-latency-ms", "0.1") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no trial meets p95 <= 0.1 ms; closest: trial 9 (p95 0.200 ms")
    assert nas(results, "--study", "hand", "--max-latency-ms", "0.1", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["chosen"] is None and [m["trial"] for m in doc["closest"]] == [9, 8, 5]


def test_cli_errors_name_what_exists(results, capsys):
    assert nas(results, "--study", "hnad") == 2
    assert f"no study 'hnad' under {results}/; studies there: hand, running" in capsys.readouterr().err
    assert nas(results, "--study", "running") == 2
    assert "study 'running' has no pareto.json yet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        nas(results, "--study", "hand", "--prefer", "fastest")
    assert exited.value.code == 2 and "invalid choice: 'fastest'" in capsys.readouterr().err


def test_the_accuracy_rule_ranks_by_the_tasks_primary_metric_and_names_it():
    members = copy.deepcopy(MEMBERS)
    for m, cpm in zip(members, (0.1, 0.6, 0.3, 0.2, 0.0)):  # trial 5 has the best CPM, trial 3 the best AUC
        m["metrics"]["val"]["cpm"] = cpm
    choice = pick(members, OBJECTIVES, metric=("cpm", "CPM"))
    assert choice.chosen["trial"] == 5 and choice.runner_up["trial"] == 8
    reasons = "\n".join(explain(choice, "hand"))
    assert "rule: highest validation CPM" in reasons and "next candidate: trial 8 (CPM 0.3000" in reasons
    assert "0.3000 CPM higher" in reasons and " AUC " not in reasons.split("validation:")[0]
    assert "  validation: CPM 0.6000, AUC " in reasons  # the task's figure first, then the stage's patch figures
    assert "rule: highest validation AUC" in "\n".join(explain(pick(MEMBERS, OBJECTIVES), "hand"))


def _openvino_choice() -> dict:
    """A runtime choice as pareto.json stores it: OpenVINO int8 fastest, ONNX Runtime int8 not timed."""
    from nas.hardware import Measurement
    from nas.hardware.runtime_choice import RuntimeTiming, choose

    def timing(runtime: str, precision: str, p50: float) -> RuntimeTiming:
        return RuntimeTiming(runtime=runtime, precision=precision, measurement=Measurement(
            p50_ms=p50, p95_ms=p50 * 1.2, p99_ms=p50 * 1.3, mean_ms=p50, cv=0.05, runs=100, seconds=1.0,
            throughput_ips=None, throughput_batch=None, peak_memory_mb=1.0, model_bytes=1, backend=runtime,
            runtime_version=f"{runtime} x", device="test CPU", precision=precision, batch=1, threads=2,
            method="measured", load_avg=0.0))

    timings = [timing("onnxruntime", "fp32", 0.9), timing("openvino", "fp32", 0.7), timing("openvino", "int8", 0.4),
               RuntimeTiming(runtime="onnxruntime", precision="int8", skipped="not timed: floor")]
    return choose(timings, ("int8",)).model_dump(mode="json")


def test_the_pick_says_which_runtime_it_ships_with_and_what_the_others_measured():
    member = copy.deepcopy(DOC["members"][0])
    member["runtime_choice"] = _openvino_choice()
    member["latency"].update(backend="openvino", precision="int8")
    lines = explain(pick([member], OBJECTIVES), "hand")
    runtime = next(line for line in lines if line.startswith("  runtime:"))
    assert "ships with openvino int8" in runtime
    assert "onnxruntime fp32 0.900 ms" in runtime and "onnxruntime int8 not timed" in runtime
    plain = explain(pick([DOC["members"][0]], OBJECTIVES), "hand")  # no recorded choice: one runtime measured
    assert "  runtime: ships with onnxruntime fp32 (the only runtime measured)" in plain


def test_report_table_shows_each_entrys_runtime():
    from pathlib import Path

    from nas.report.html import _table

    member = copy.deepcopy(DOC["members"][0])
    member["runtime_choice"] = _openvino_choice()
    table = _table([member, DOC["members"][1]], Path("nowhere"), "t")
    assert "<th title=\"click to sort\">runtime</th>" in table
    assert "<td>openvino int8</td>" in table and "openvino fp32 0.700 ms" in table
    assert "<td>onnxruntime fp32</td><td>–</td>" in table
