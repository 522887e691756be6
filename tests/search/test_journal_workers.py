"""`--storage journal:PATH` with `--workers 2`: Optuna's journal file shared by two local processes, no database."""

import json

import optuna
import pytest

from conftest import QUICK_PROFILE, REPO, SMALL_XRAY, run_nas

ONE_ARCH = REPO / "tests/fixtures/xray-one-arch.yaml"


@pytest.mark.slow
def test_two_workers_share_a_journal_file(tmp_path):
    journal = tmp_path / "journal.log"
    proc = run_nas("search", "--space", str(ONE_ARCH), "--data", str(SMALL_XRAY), "--hardware",
                   str(QUICK_PROFILE), "--epochs", "1", "--no-baselines", "--no-progress", "--study", "j",
                   "--storage", f"journal:{journal}", "--trials", "2", "--workers", "2", "--json", cwd=tmp_path,
                   timeout=1500)  # three processes start and share the cores: minutes on a busy machine
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("joined study 'j'") == 2
    study = optuna.load_study(study_name="j", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    assert sorted(t.state.name for t in study.trials if t.state.name != "FAIL") == ["COMPLETE"] * 2
    assert all(t.user_attrs.get("failure_kind") == "surplus" for t in study.trials if t.state.name == "FAIL")
    assert not (tmp_path / "results" / "j" / "study.db").exists()  # nothing fell back to the SQLite default
    assert json.loads(proc.stdout)["members"]
