"""A search stopped by Ctrl-C, SIGTERM or SIGKILL resumes with every completed trial intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from conftest import QUICK_PROFILE, SMALL_XRAY, run_nas

pytestmark = pytest.mark.slow
ARGS = ["search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(QUICK_PROFILE), "--epochs", "1",
        "--no-baselines", "--study", "r"]


def start(cwd: Path, trials: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nas.cli.main", *ARGS, "--trials", str(trials)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def wait_for_completed(cwd: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (cwd / "results" / "r" / "study.db").exists() or len(completed(cwd)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the search made no progress"
        time.sleep(0.2)


def completed(cwd: Path) -> dict[int, tuple]:
    if not (cwd / "results" / "r" / "settings.json").exists():  # written once the study exists in the storage
        return {}
    try:
        study = optuna.load_study(study_name="r", storage=f"sqlite:///{cwd / 'results' / 'r' / 'study.db'}")
    except KeyError:  # the file exists a moment before the study in it
        return {}
    return {t.number: (tuple(t.values), t.params) for t in study.trials if t.state.name == "COMPLETE"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_marks_the_running_trial_and_resume_finishes(tmp_path, sig):
    proc = start(tmp_path, trials=50)
    wait_for_completed(tmp_path, 1, proc)
    time.sleep(0.5)  # into the next trial
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    before = completed(tmp_path)
    assert len(before) >= 1
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'results' / 'r' / 'study.db'}")
    interrupted = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs["failure_kind"] for t in interrupted] == ["interrupted"]

    target = len(before) + 1
    resumed = run_nas(*ARGS, "--trials", str(target), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)}/{target} done; trial {interrupted[0].number} interrupted, retrying" in resumed.stderr
    after = completed(tmp_path)
    assert len(after) == target  # the interrupted trial does not count against the budget
    assert interrupted[0].params in [params for _, params in after.values()]  # it ran again, same parameters
    assert all(after[n] == v for n, v in before.items())
    assert json.loads((tmp_path / "results" / "r" / "pareto.json").read_text())["members"]


def test_killed_search_resumes_with_completed_trials_intact(tmp_path):
    proc = start(tmp_path, trials=50)
    wait_for_completed(tmp_path, 2, proc)
    proc.kill()  # SIGKILL: no handler runs, the running trial is left RUNNING in the storage
    proc.communicate(timeout=60)
    before = completed(tmp_path)
    assert len(before) >= 2
    resumed = run_nas(*ARGS, "--trials", str(len(before) + 1), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = completed(tmp_path)
    assert len(after) == len(before) + 1 and all(after[n] == v for n, v in before.items())
    for number in before:  # the records on disk survived too
        assert json.loads((tmp_path / "results" / "r" / "trials" / str(number) / "result.json").read_text())
