"""The contract every registered task keeps, in the manner of the family contract tests: a candidate sampled from
its tiny space builds stage by stage, exports to ONNX that matches PyTorch, and is measured on the target; a
classification task also trains on a tiny slice and scores the export with its declared metrics."""

from __future__ import annotations

import optuna
import pytest
import torch
from _vois import VOIS, small_vois
from conftest import FIXTURES, QUICK_PROFILE, SMALL_XRAY

from nas.export import check_parity, to_onnx
from nas.hardware import load_profile, open_target
from nas.models import create_model
from nas.spaces import load_space
from nas.spec import Spec
from nas.tasks import OBJECTIVES, ClassificationTask, get_task, list_tasks

TINY_SPACES = {"xray": "xray-tiny-compress.yaml", "nodule": "nodule-tiny.yaml",
               "nodule-malignancy": "nodule-malignancy-tiny.yaml"}
"""A task's smallest space, for tests: a newly registered task adds its own here."""


def stages(task_name: str, trial: optuna.Trial) -> list[Spec]:
    """The candidate's models, one per stage, as the one trial path samples them."""
    space = load_space(str(FIXTURES / TINY_SPACES[task_name]))
    candidate = get_task(task_name).sample_candidate(space, trial, in_channels=1, max_epochs=1, epochs=None)
    assert candidate.main in candidate.stages and candidate.main.compressed
    return [stage.spec for stage in candidate.stages]


def tiny_slice(task_name: str, tmp_path):
    data = {"xray": SMALL_XRAY, "nodule-malignancy": small_vois(tmp_path / "vois") if VOIS.is_dir() else None}
    if data.get(task_name) is None:
        pytest.fail(f"no tiny data slice for task {task_name!r}: add one to tests/tasks/test_task_contract.py")
    return get_task(task_name).load_data(data[task_name])


@pytest.mark.parametrize("task_name", list_tasks())
def test_every_task_has_a_tiny_space_and_its_objectives(task_name):
    task = get_task(task_name)
    assert task_name in TINY_SPACES and load_space(str(FIXTURES / TINY_SPACES[task_name])).task == task_name
    assert all(name in OBJECTIVES for name in task.default_objectives)
    assert task.description and task.normalisation.std > 0


@pytest.mark.parametrize("task_name", list_tasks())
def test_each_stage_builds_exports_and_is_measured(task_name, tmp_path):
    target = open_target(load_profile(str(QUICK_PROFILE)))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    for index, spec in enumerate(stages(task_name, trial)):
        assert len(spec.input_shape) == 1 + spec.spatial_dims
        model = create_model(spec)
        onnx = to_onnx(model, spec.input_shape, tmp_path / f"stage{index}.onnx")
        check_parity(model, onnx, torch.randn(2, *spec.input_shape))
        measured = target.measure(onnx, "fp32", spec.input_shape)
        assert measured.p50_ms > 0 and measured.method == "measured"


@pytest.mark.parametrize("task_name", [t for t in list_tasks() if isinstance(get_task(t), ClassificationTask)])
def test_a_classification_task_trains_and_scores_its_export(task_name, tmp_path):
    task = get_task(task_name)
    dataset = tiny_slice(task_name, tmp_path)
    (spec,) = stages(task_name, optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    model = create_model(spec)
    log = task.train(model, spec, dataset, seed=0, deadline=None, stop_after=1)
    assert len(log["epoch_losses"]) == 1
    onnx = to_onnx(model, spec.input_shape, tmp_path / "model.onnx")
    check_parity(model, onnx, task.sample_inputs(spec, dataset))
    metrics = task.evaluate(onnx, spec, dataset, "val", threshold=None, target_sensitivity=0.9)
    assert set(metrics) == set(task.metric_names) and 0 <= metrics["auc"] <= 1
    assert metrics["sensitivity"] >= 0.9  # the threshold was chosen on this split to reach the target


@pytest.mark.parametrize("task_name", list_tasks())
def test_a_task_describes_its_figures_in_its_own_words(task_name):
    task = get_task(task_name)
    metrics = {name: 0.123456789 for name in task.metric_names}
    line = task.describe_metrics(metrics)
    assert task.primary_metric in task.metric_names and task.label(task.primary_metric) in line
    assert "0.123456789" not in line  # rounded, not Python's repr
    if task.primary_metric != "auc":  # a task scored by another metric does not lead with AUC
        assert not line.startswith("AUC")
