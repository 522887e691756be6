"""`nas search` and `nas export` end to end, run as a user runs them (a separate process per command)."""

from __future__ import annotations

import json
import math
import re

import jsonschema
import numpy as np
import onnxruntime as ort
import pytest

from conftest import QUICK_PROFILE, SMALL_SPLITS, SMALL_XRAY, run_nas, schema
from nas.search.pareto import non_dominated

pytestmark = pytest.mark.slow
SEARCH = ["search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(QUICK_PROFILE), "--epochs", "1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One small search with the baseline enqueued, shared by the assertions below."""
    cwd = tmp_path_factory.mktemp("search")
    proc = run_nas(*SEARCH, "--trials", "4", "--study", "e2e", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


def current_member(cwd):
    """A member of the study's front as it stands now: the resume test below adds a trial that can displace the
    first run's members, whose weights are then no longer kept."""
    return json.loads((cwd / "results" / "e2e" / "pareto.json").read_text())["members"][0]


def test_json_output_is_one_document_valid_against_the_schema(finished):
    cwd, proc = finished
    doc = json.loads(proc.stdout)  # the whole of stdout is exactly one JSON document
    jsonschema.validate(doc, schema("pareto.v1.schema.json"))
    assert doc == json.loads((cwd / "results" / "e2e" / "pareto.json").read_text())
    assert doc["task"] == "xray" and doc["hardware"] == "cpu-quick"
    assert [o["name"] for o in doc["objectives"]] == ["auc", "latency_p95"]
    assert "trial" in proc.stderr  # progress went to stderr


def test_members_are_non_dominated_with_measured_latency(finished):
    doc = json.loads(finished[1].stdout)
    members = doc["members"]
    assert members
    values = [[m["objectives"]["auc"], m["objectives"]["latency_p95"]] for m in members]
    assert all(non_dominated(values, ["maximize", "minimize"]))
    for m in members:
        lat = m["latency"]
        assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] and math.isfinite(lat["p99_ms"])
        assert lat["method"] == "measured" and lat["backend"] == "onnxruntime" and lat["threads"] >= 1
        assert lat["runtime_version"].startswith("onnxruntime") and lat["device"]
        assert m["latency"]["p95_ms"] == m["objectives"]["latency_p95"]  # the front uses the re-measured numbers
        assert 0.5 <= m["metrics"]["val"]["auc"] <= 1 and 0 <= m["metrics"]["test"]["auc"] <= 1
        assert m["metrics"]["val"]["sensitivity"] >= 0.95  # the operating point is chosen on validation
    assert doc["remeasured"]["members_before"] >= doc["remeasured"]["members_after"] == len(members)


def test_test_split_is_scored_only_for_members_and_baselines(finished):
    cwd, proc = finished
    doc = json.loads(proc.stdout)
    reported = {m["trial"] for m in doc["members"]} | {b["trial"] for b in doc["baselines"]}
    trials = cwd / "results" / "e2e" / "trials"
    scored = {int(p.parent.name) for p in trials.glob("*/test_metrics.json")}
    assert scored == reported
    assert [b["baseline"] for b in doc["baselines"]] == ["dsconv_reference"]
    finished_trials = {int(p.parent.name) for p in trials.glob("*/result.json")}
    assert len(finished_trials) == 4
    for number in finished_trials - reported:  # only front members and baselines keep weights and ONNX
        assert not (trials / str(number) / "model.onnx").exists()
    for number in reported:
        assert (trials / str(number) / "model.onnx").exists() and (trials / str(number) / "model.pt").exists()


def test_report_shows_every_trial_and_the_front(finished):
    cwd, proc = finished
    doc = json.loads(proc.stdout)
    page = (cwd / "results" / "e2e" / "report.html").read_text()
    assert "plotly" in page and 'id="pareto-plot"' in page
    assert "<script src=" not in page  # self-contained: plotly.js is embedded, nothing is fetched
    table = page[page.index('id="front-table"'):]
    assert table.count("<tr>") == len(doc["members"]) + 1
    for m in doc["members"]:
        assert f"<td>{m['trial']}</td>" in table
    assert "dsconv_reference" in page and "Pareto front" in page


def test_rerun_resumes_and_keeps_completed_trials(finished):
    cwd, proc = finished
    before = {p.parent.name: p.read_text() for p in (cwd / "results" / "e2e" / "trials").glob("*/result.json")}
    again = run_nas(*SEARCH, "--trials", "5", "--study", "e2e", cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stderr
    after = {p.parent.name: p.read_text() for p in (cwd / "results" / "e2e" / "trials").glob("*/result.json")}
    assert len(after) == 5 and all(after[k] == v for k, v in before.items())
    assert re.search(r"Pareto front: .*pareto\.json", again.stdout) and "report:" in again.stdout
    assert "val AUC" in again.stdout  # the front printed as a table


def test_export_writes_a_verified_package(finished, tmp_path):
    cwd, _ = finished
    member = current_member(cwd)
    out = tmp_path / "shipped"
    exported = run_nas("export", "--study", "e2e", "--trial", str(member["trial"]), "--out", str(out), "--json",
                       cwd=cwd)
    assert exported.returncode == 0, exported.stderr
    card = json.loads(exported.stdout)
    for name in ("model.onnx", "model.pt", "spec.json", "io.json", "model_card.md", "model_card.json"):
        assert (out / name).exists(), name
    assert card == json.loads((out / "model_card.json").read_text())
    # The export thresholds calibrated scores, sigmoid(logit / T): the same operating point as the search's raw
    # threshold, moved by T (float64 scores also split a few ties that float32 softmax saturation made).
    io = json.loads((out / "io.json").read_text())
    temperature, raw = io["calibration"]["temperature"], member["metrics"]["val"]["threshold"]
    assert card["threshold"] == pytest.approx(1 / (1 + ((1 - raw) / raw) ** (1 / temperature)), rel=1e-3)
    for key in ("auc", "accuracy", "sensitivity", "specificity"):
        assert card["metrics"]["test"][key] == pytest.approx(member["metrics"]["test"][key], abs=0.01)
    assert card["parity_max_abs_diff"] < 1e-3
    assert json.loads((out / "spec.json").read_text()) == member["spec"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    shape = card["preprocessing"]["input_shape"][1:]
    logits = session.run(None, {"input": np.zeros((3, *shape), np.float32)})[0]
    assert logits.shape == (3, 2)
    assert f"{card['threshold']:.4f}" in (out / "model_card.md").read_text()
    low, high = card["metrics"]["test_ci95"]["auc"]
    assert low <= card["metrics"]["test"]["auc"] <= high and high - low < 0.5
    assert card["data"]["split_sizes"] == SMALL_SPLITS
    assert io["threshold"] == card["threshold"] and io["file"] == "model.onnx" and io["input_name"] == "input"


def test_int8_export_is_quantized_verified_and_measured(finished, tmp_path):
    cwd, _ = finished
    member = current_member(cwd)
    out = tmp_path / "int8"
    # 0.05, not the product's 0.01, which these models do not reliably meet (measured: a 1-epoch model 0.7819 ->
    # 0.7710, a 3-epoch one 0.9835 -> 0.9304); tests/clinical/test_int8_default.py checks how the default is enforced.
    exported = run_nas("export", "--study", "e2e", "--trial", str(member["trial"]), "--out", str(out),
                       "--format", "int8", "--max-auc-drop", "0.05", "--json", cwd=cwd)
    assert exported.returncode == 0, exported.stderr
    card = json.loads(exported.stdout)
    assert card["deployed_file"] == "model.int8.onnx" and card["compression"]["quant"] == "int8"
    import onnx

    ops = {node.op_type for node in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # a real QDQ graph, not a copy of the float one
    assert card["latency"]["precision"] == "int8" and card["latency"]["method"] == "measured"
    assert card["metrics"]["val_recorded"] == member["metrics"]["val"]
    assert member["metrics"]["val"]["auc"] - card["metrics"]["val"]["auc"] <= 0.05
    assert card["metrics"]["val"]["sensitivity"] >= 0.95


def test_tensorrt_export_says_what_is_missing(finished, tmp_path):
    cwd, _ = finished
    member = current_member(cwd)
    exported = run_nas("export", "--study", "e2e", "--trial", str(member["trial"]), "--out", str(tmp_path / "t"),
                       "--format", "tensorrt", cwd=cwd)
    assert exported.returncode == 2 and "TensorRT" in exported.stderr and "--format onnx or int8" in exported.stderr


def test_export_errors_name_what_exists(finished, tmp_path):
    cwd, _ = finished
    no_trial = run_nas("export", "--study", "e2e", "--trial", "99", "--out", str(tmp_path / "x"), cwd=cwd)
    assert no_trial.returncode == 2 and "has no trial 99; trials: 0, 1, 2, 3" in no_trial.stderr
    no_study = run_nas("export", "--study", "e2f", "--trial", "0", "--out", str(tmp_path / "x"), cwd=cwd)
    assert no_study.returncode == 2 and "no study 'e2f'" in no_study.stderr and "e2e" in no_study.stderr


def test_failed_trial_cannot_be_exported(tmp_path):
    proc = run_nas(*SEARCH, "--trials", "1", "--no-baselines", "--study", "t", "--trial-timeout", "0.01", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # every trial failed: no front, and the exit code says so
    assert "failed: TrialError: trial timeout" in proc.stderr
    assert "every trial of study 't' failed (1), so there is no front" in proc.stderr
    exported = run_nas("export", "--study", "t", "--trial", "0", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert exported.returncode == 2 and "trial 0 of 't' failed" in exported.stderr
    assert not (tmp_path / "results" / "t" / "pareto.json").exists()
