"""Compression inside the search: pruned, distilled and INT8 candidates are scored on what ships."""

from __future__ import annotations

import json

import jsonschema
import onnx
import pytest
import torch

from _regression import assert_same_as_before
from conftest import FIXTURES, QUICK_PROFILE, schema
from nas.compress import load_model
from nas.errors import TrialError
from nas.export import check_parity
from nas.report.package import export_trial
from nas.search import trial as trial_module
from nas.search.final import finalize
from nas.search.runner import SearchConfig, prepare, run_search

SPACE = FIXTURES / "xray-tiny-compress.yaml"
PLAIN = {"family": "dsconv", "prune_ratio": 0.0, "distill": False, "quant": "fp32"}
PRUNED_INT8 = {"family": "dsconv", "prune_ratio": 0.5, "distill": False, "quant": "int8"}
DISTILLED = {"family": "dsconv", "prune_ratio": 0.0, "distill": True, "temperature": 4.0, "alpha": 0.5,
             "quant": "fp32"}


def config(tmp_path, **overrides) -> SearchConfig:
    base = dict(space=str(SPACE), hardware=str(QUICK_PROFILE), study="c", results=tmp_path / "results", trials=3,
                epochs=1, progress=False, baselines=False, sampler="random")
    return SearchConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compression")
    run = prepare(config(tmp))
    for params in (PLAIN, PRUNED_INT8, DISTILLED):
        run.study.enqueue_trial(params)
    run_search(config(tmp), run)
    doc = finalize(run, keep_artifacts="all")  # the tests below open non-front trials too
    return run, doc, tmp


def result(run, number: int) -> dict:
    return json.loads((run.context.trial_dir(number) / "result.json").read_text())


@pytest.mark.slow
def test_the_same_seeds_give_the_same_trials_and_front_fields_as_before_the_task_plug_in(searched):
    run, doc, _ = searched
    assert_same_as_before("xray-compression", run.study.trials, doc)


@pytest.mark.slow
def test_every_trial_completes_and_the_front_carries_compression(searched):
    run, doc, _ = searched
    assert [t.state.name for t in run.study.trials] == ["COMPLETE"] * 3
    jsonschema.validate(doc, schema("pareto.v1.schema.json"))
    assert doc["members"]
    for member in doc["members"]:
        spec, effect = member["spec"]["compression"], member["compression"]
        assert effect["quant"] == spec["quant"] == member["latency"]["precision"]
        assert effect["val_deployed"] == member["metrics"]["val"]
        assert set(effect["val_float"]) == set(member["metrics"]["val"])


@pytest.mark.slow
def test_a_pruned_int8_candidate_is_measured_and_scored_as_the_int8_artifact(searched):
    run, _, _ = searched
    r = result(run, 1)
    channels = r["spec"]["compression"]["channels"]
    assert channels and r["spec"]["compression"]["prune_ratio"] == 0.5
    assert set(r["latency_by_precision"]) == {"fp32", "int8"}
    assert r["measurement"] == r["latency_by_precision"]["int8"] and r["measurement"]["precision"] == "int8"
    folder = run.context.trial_dir(1)
    ops = {node.op_type for node in onnx.load(folder / "model.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # what was scored is the quantized file
    assert r["metrics"]["val"] != r["float_metrics"]["val"]  # INT8 moves the scores, so the record shows both
    fp32, int8 = r["latency_by_precision"]["fp32"]["p50_ms"], r["latency_by_precision"]["int8"]["p50_ms"]
    assert any("no faster than fp32" in flag for flag in r["flags"]) == (int8 >= fp32)
    # The pruned member rebuilds from its stored spec alone, and its float export is that model.
    spec = run.context.trial_dir(1) / "spec.json"
    from nas.spec import Spec

    model = load_model(Spec.load(spec), folder / "model.pt")
    assert all(dict(model.named_modules())[name].out_channels == count for name, count in channels.items())
    assert check_parity(model, folder / "model.fp32.onnx", torch.randn(4, 1, 28, 28)) < 1e-3


@pytest.mark.slow
def test_the_distilled_candidate_learns_from_the_best_model_so_far(searched):
    run, _, _ = searched
    r = result(run, 2)
    best = max((0, 1), key=lambda n: (result(run, n)["metrics"]["val"]["auc"], -n))
    assert r["spec"]["compression"]["distill"] and r["teacher"] == f"trial {best}"
    cached = list(run.context.trial_dir(best).glob("logits-train-*.npy"))
    assert len(cached) == 1  # the teacher ran once over the training split, not per epoch


@pytest.mark.slow
def test_export_ships_the_int8_artifact_the_search_scored(searched, tmp_path):
    run, _, tmp = searched
    card = export_trial(tmp / "results", "c", 1, tmp_path / "shipped")
    assert card["format"] == "int8" and card["deployed_file"] == "model.int8.onnx"
    assert card["compression"]["pruned_layers"] == len(result(run, 1)["spec"]["compression"]["channels"])
    assert abs(card["metrics"]["val"]["auc"] - result(run, 1)["metrics"]["val"]["auc"]) < 0.01
    assert "## Compression" in (tmp_path / "shipped" / "model_card.md").read_text()


@pytest.mark.slow
def test_a_candidate_whose_quantization_fails_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = trial_module.quantize_int8

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TrialError("INT8 quantization of shape.onnx failed: simulated calibration error")
        return original(*args, **kwargs)

    monkeypatch.setattr(trial_module, "quantize_int8", failing_once)
    run = prepare(config(tmp_path, trials=2))
    run.study.enqueue_trial(PRUNED_INT8)
    run.study.enqueue_trial(PRUNED_INT8)
    run_search(config(tmp_path, trials=2), run)
    assert [t.state.name for t in run.study.trials] == ["FAIL", "COMPLETE"]
    assert "simulated calibration error" in run.study.trials[0].user_attrs["failure"]
