"""`nas search --strategy one-shot`: trials inherit the study's supernet, the front ships fine-tuned, and a killed
search resumes with its supernet and completed trials."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import jsonschema
import onnx
import optuna
import pytest

from conftest import FIXTURES, QUICK_PROFILE, REPO, TINY_XRAY, run_nas, schema
from nas.compress import load_model
from nas.errors import ConfigError, StudyError
from nas.search.final import finalize
from nas.search.runner import SearchConfig, prepare, run_search
from nas.spec import Spec
from nas.supernet import checkpoint_epochs

ONE_SHOT = ["search", "--space", "xray-tiny", "--strategy", "one-shot", "--supernet-epochs", "1", "--epochs", "1",
            "--data", str(TINY_XRAY), "--hardware", str(QUICK_PROFILE), "--no-baselines", "--no-progress"]


def _study(results, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{results / name / 'study.db'}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("oneshot")
    proc = run_nas(*ONE_SHOT, "--trials", "4", "--study", "os", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "results", proc


@pytest.mark.slow
def test_trials_inherit_supernet_weights_instead_of_training(finished):
    results, proc = finished
    assert "supernet: epoch 1/1" in proc.stderr
    assert checkpoint_epochs(results / "os" / "supernet.pt") == 1
    trials = _study(results, "os").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    for t in trials:
        assert t.user_attrs["weights"] == "inherited"
        log = t.user_attrs["result"]["train_log"]
        assert log["weights"] == "inherited" and log["epoch_losses"] == [] and log["bn_batches"] > 0
        assert any("inherited from the study's supernet" in f for f in t.user_attrs["result"]["flags"])


@pytest.mark.slow
def test_the_front_is_schema_valid_and_of_fine_tuned_members(finished):
    results, proc = finished
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, schema("pareto.v1.schema.json"))
    assert doc["strategy"] == {"name": "one-shot", "supernet_epochs": 1}
    assert doc["members"]
    for member in doc["members"]:
        assert member["weights"] == "fine-tuned"
        assert not any("search-time estimate" in f for f in member["flags"])
        assert any(f.startswith("fine-tuned 1 epoch(s) as a standalone model") for f in member["flags"])
        tuned = json.loads((results / "os" / "trials" / str(member["trial"]) / "finetuned.json").read_text())
        assert tuned["metrics"]["val"] == member["metrics"]["val"]  # the front reports the fine-tuned model
        assert len(tuned["train_log"]["member_epoch_losses"]) == 1
        assert tuned["train_log"]["inherited_val"] != tuned["metrics"]["val"]  # fine-tuning changed the model
        assert member["metrics"]["test"]["auc"] > 0  # scored once on test, as every front


@pytest.mark.slow
def test_a_killed_one_shot_search_keeps_its_supernet_and_completed_trials(tmp_path):
    command = [sys.executable, "-m", "nas.cli.main", *ONE_SHOT, "--trials", "3", "--study", "k",
               "--results", str(tmp_path / "results")]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = tmp_path / "results" / "k" / "trials" / "1"  # trial 1 starts once trial 0 is told to the study
    deadline = time.monotonic() + 300
    while not second.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "trial 1 did not start within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    supernet = tmp_path / "results" / "k" / "supernet.pt"
    stamp = supernet.stat().st_mtime_ns
    before = _study(tmp_path / "results", "k").trials[0]
    assert before.state.name == "COMPLETE"

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "supernet: using the finished checkpoint" in again.stderr and "supernet: training" not in again.stderr
    assert supernet.stat().st_mtime_ns == stamp  # not trained again
    trials = _study(tmp_path / "results", "k").trials
    assert trials[0].state.name == "COMPLETE" and trials[0].values == before.values  # kept as it was
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3


def _config(tmp_path, **overrides) -> SearchConfig:
    base = dict(space="xray-tiny", data=str(TINY_XRAY), hardware=str(QUICK_PROFILE), study="s",
                results=tmp_path / "results", trials=2, epochs=1, progress=False, baselines=False)
    return SearchConfig(**{**base, **overrides})


def test_one_shot_samples_only_the_supernet_family_with_the_training_recipe_pinned(tmp_path):
    run = prepare(_config(tmp_path, strategy="one-shot"))
    space = run.context.space
    assert list(space.families) == ["dsconv"] and space.fidelity is None
    assert space.training["lr"] == 0.003 and space.training["augment"] == 0.2  # the recipe defaults
    assert run.context.one_shot is not None and run.context.one_shot.supernet is None  # trained by run_search
    assert run.settings.strategy == {"name": "one-shot", "supernet_epochs": 10}


def test_a_study_does_not_resume_under_another_strategy_and_one_shot_has_no_rungs(tmp_path):
    prepare(_config(tmp_path))
    with pytest.raises(StudyError, match="strategy"):
        prepare(_config(tmp_path, strategy="one-shot"))
    with pytest.raises(ConfigError, match="one-shot"):
        prepare(_config(tmp_path, study="r", strategy="one-shot", rungs="1,3"))
    with pytest.raises(ConfigError, match="unknown strategy 'oneshot'.*one-shot"):
        prepare(_config(tmp_path, study="t", strategy="oneshot"))
    with pytest.raises(ConfigError, match="--member-epochs must be at least 1, got 0"):
        prepare(_config(tmp_path, study="u", strategy="one-shot", member_epochs=0))


@pytest.mark.slow
def test_an_inherited_subnet_is_pruned_quantized_and_its_member_fine_tuned_as_every_trial(tmp_path):
    config = _config(tmp_path, space=str(FIXTURES / "xray-tiny-compress.yaml"), trials=1, strategy="one-shot",
                     supernet_epochs=1, member_epochs=1)
    run = prepare(config)
    run.study.enqueue_trial({"family": "dsconv", "prune_ratio": 0.5, "distill": False, "quant": "int8"})
    run_search(config, run)
    (trial,) = run.study.trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["weights"] == "inherited"
    result = trial.user_attrs["result"]
    assert result["spec"]["compression"]["channels"]  # pruned to the counts phase 1 planned and measured
    assert len(result["train_log"]["finetune_epoch_losses"]) == 1  # and fine-tuned after pruning, as every trial

    doc = finalize(run, log=lambda message: None)
    (member,) = doc["members"]
    assert member["weights"] == "fine-tuned" and member["latency"]["precision"] == "int8"
    folder = run.context.trial_dir(0)
    assert any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in onnx.load(folder / "model.onnx").graph.node)
    spec = Spec.model_validate(member["spec"])
    tuned = load_model(spec, folder / "model.pt")  # the shipped shapes, rebuilt from the spec alone
    assert sum(p.numel() for p in tuned.parameters()) == member["params"]
