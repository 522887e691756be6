"""`nas search --teacher FOLDER`: distillation learns from a checkpoint the user names (spec.json + model.pt)."""

import json

import optuna
import pytest
import torch
import yaml

from conftest import QUICK_PROFILE, REPO, SMALL_XRAY, run_nas
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

TEACHER = Spec(
    family="dsconv", input_size=28, in_channels=1, num_classes=2,
    arch={"stem_width": 8, "stem_stride": 2, "se": False, "activation": "relu", "dropout": 0.0,
          "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}]},
    training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0),
)


@pytest.fixture
def distilling_space(tmp_path):
    """The one-architecture space, with distillation always on and no pruning."""
    space = yaml.safe_load((REPO / "tests/fixtures/xray-one-arch.yaml").read_text())
    space["name"] = "xray-one-arch-distill"
    space["compression"].update({"prune_ratio": 0.0, "distill": True, "temperature": 4.0, "alpha": 0.5})
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.mark.slow
def test_a_named_teacher_folder_teaches_the_first_trial(tmp_path, distilling_space):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "spec.json").write_text(TEACHER.to_json())
    torch.manual_seed(0)
    torch.save(create_model(TEACHER).state_dict(), teacher / "model.pt")
    proc = run_nas("search", "--space", str(distilling_space), "--data", str(SMALL_XRAY), "--hardware",
                   str(QUICK_PROFILE), "--epochs", "1", "--no-baselines", "--no-progress", "--study", "kd",
                   "--trials", "1", "--teacher", str(teacher), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="kd", storage=f"sqlite:///{tmp_path / 'results' / 'kd' / 'study.db'}")
    (trial,) = study.trials
    result = trial.user_attrs["result"]
    assert trial.state.name == "COMPLETE" and result["spec"]["compression"]["distill"] is True
    assert result["teacher"] == str(teacher)  # trial 0 had a teacher: without --teacher none exists yet
    assert not any("no finished model exists yet" in flag for flag in result["flags"])
    assert list(teacher.glob("logits-train-*.npy"))  # the teacher ran on the training split, once
    assert json.loads(proc.stdout)["members"]


def test_a_folder_without_weights_is_refused_naming_what_is_missing(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "spec.json").write_text(TEACHER.to_json())
    proc = run_nas("search", "--teacher", str(tmp_path / "half"), "--study", "x", cwd=tmp_path)
    assert proc.returncode == 2 and "missing model.pt" in proc.stderr
