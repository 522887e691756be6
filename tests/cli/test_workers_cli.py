"""`nas search --workers K`: K local worker processes on one SQLite study, then one front."""

import json

import optuna
import pytest

from conftest import QUICK_PROFILE, SMALL_XRAY, run_nas


@pytest.mark.slow
def test_two_local_workers_complete_the_budget(tmp_path):
    proc = run_nas("search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(QUICK_PROFILE),
                   "--epochs", "1", "--no-baselines", "--study", "k", "--trials", "4", "--workers", "2", "--json",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("joined study 'k'") == 2
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{tmp_path / 'results' / 'k' / 'study.db'}")
    assert sorted(t.state.name for t in study.trials if t.state.name != "FAIL") == ["COMPLETE"] * 4
    assert all(t.user_attrs.get("failure_kind") == "surplus" for t in study.trials if t.state.name == "FAIL")
    assert json.loads(proc.stdout)["members"]
