"""The search loop: failures are recorded and the study goes on; budgets stop candidates before training."""

from __future__ import annotations

import json

import pytest

from conftest import QUICK_PROFILE, SMALL_XRAY
from nas.search.runner import SearchConfig, prepare, run_search


def config(tmp_path, **overrides) -> SearchConfig:
    base = dict(space="xray-tiny", data=str(SMALL_XRAY), hardware=str(QUICK_PROFILE), study="s",
                results=tmp_path / "results", trials=3, epochs=1, progress=False, baselines=False)
    return SearchConfig(**{**base, **overrides})


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = None

    def flaky_train(model, spec, dataset, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated out of memory")
        return original(model, spec, dataset, **kwargs)

    run = prepare(config(tmp_path))
    original = run.context.task.train
    monkeypatch.setattr(run.context.task, "train", flaky_train)
    run_search(config(tmp_path), run)
    states = [t.state.name for t in run.study.trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    failed = run.study.trials[0]
    assert failed.user_attrs["failure_kind"] == "error"
    assert "simulated out of memory" in failed.user_attrs["failure"]
    record = json.loads((run.context.trial_dir(0) / "failure.json").read_text())
    assert "simulated out of memory" in record["reason"] and "Traceback" in record["traceback"]


@pytest.mark.slow
def test_latency_budget_stops_candidates_before_training(tmp_path, monkeypatch):
    trained = []
    run = prepare(config(tmp_path, max_latency_ms=1e-6, baselines=True, trials=3))
    original = run.context.task.train

    def counting_train(model, spec, dataset, **kwargs):
        trained.append(spec.baseline)
        return original(model, spec, dataset, **kwargs)

    monkeypatch.setattr(run.context.task, "train", counting_train)
    run_search(config(tmp_path, max_latency_ms=1e-6, baselines=True, trials=3), run)
    states = [t.state.name for t in run.study.trials]
    assert states == ["COMPLETE", "PRUNED", "PRUNED"]  # the baseline is the yardstick and always trains
    assert trained == ["dsconv_reference"]
    pruned = run.study.trials[1]
    assert "over the 1e-06 ms budget" in pruned.user_attrs["infeasible"]
    assert "measurement" in pruned.user_attrs  # measured, just not trained
    assert not (run.context.trial_dir(1) / "model.pt").exists()
    # the trained baseline breaks the budget, so it is infeasible for Optuna's constraint handling too
    assert run.study.trials[0].constraints["max_latency_ms"] > 0


@pytest.mark.slow
def test_trial_timeout_fails_the_trial(tmp_path):
    run = run_search(config(tmp_path, trials=1, trial_timeout=0.01))
    trial = run.study.trials[0]
    assert trial.state.name == "FAIL" and "trial timeout" in trial.user_attrs["failure"]


def test_training_device_auto_follows_the_hardware_and_cuda_without_a_gpu_is_refused():
    import torch

    from nas.errors import ConfigError
    from nas.search.runner import resolve_train_device

    assert resolve_train_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_train_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="PyTorch sees no CUDA device here"):
            resolve_train_device("cuda")
    with pytest.raises(ConfigError, match="must be auto, cpu or cuda, got 'tpu'"):
        resolve_train_device("tpu")
