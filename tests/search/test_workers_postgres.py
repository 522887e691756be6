"""Many workers, one study, on a real PostgreSQL server: no trial lost, none run twice, a killed one retried."""

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

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SEARCH = ["--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(QUICK_PROFILE), "--epochs", "1",
          "--no-baselines"]


def fresh_db(url: str, name: str) -> str:
    """One database per test, so studies never meet."""
    import psycopg

    with psycopg.connect(url.replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def create_study(tmp_path: Path, url: str, trials: int) -> None:
    """`nas search` with --timeout 0 only creates the study (settings and budget), running no trial."""
    proc = run_nas("search", *SEARCH, "--study", "w", "--storage", url, "--trials", str(trials), "--timeout", "0",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def worker(tmp_path: Path, url: str, worker_id: int, grace: float = 60) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas.cli.main", "worker", "--study", "w", "--storage", url, "--results", "results",
         "--worker-id", str(worker_id), "--grace-period", str(grace)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return optuna.load_study(study_name="w", storage=storage).trials


def test_three_workers_complete_exactly_the_budget(tmp_path, postgres_url):
    url = fresh_db(postgres_url, "three")
    create_study(tmp_path, url, trials=6)
    procs = [worker(tmp_path, url, i) for i in (1, 2, 3)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e for _, e in outputs]
    done = [t for t in trials(url) if t.state.name == "COMPLETE"]
    assert len(done) == 6
    assert len({t.number for t in done}) == 6
    specs = [json.dumps(t.user_attrs["spec"], sort_keys=True) for t in done]
    assert len(set(specs)) == 6  # reseeded workers never sample in lock-step
    ran = [int(n) for _, err in outputs for n in err.split("ran trials [")[-1].split("]")[0].split(",") if n.strip()]
    assert sorted(ran) == sorted(t.number for t in done)  # each trial run by exactly one worker
    assert len([e for _, e in outputs if "ran trials []" not in e]) >= 2  # the work was actually shared
    # the front is written afterwards by nas search on the same storage, which runs nothing more
    final = run_nas("search", *SEARCH, "--study", "w", "--storage", url, "--trials", "6", "--json", cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["members"]
    assert len([t for t in trials(url) if t.state.name == "COMPLETE"]) == 6


def test_killed_worker_trial_is_failed_and_retried(tmp_path, postgres_url):
    url = fresh_db(postgres_url, "killed")
    create_study(tmp_path, url, trials=4)
    victim = worker(tmp_path, url, 1, grace=6)
    deadline = time.monotonic() + 300
    while not any(t.state.name == "RUNNING" and "measurement" in t.user_attrs for t in trials(url)):
        assert time.monotonic() < deadline and victim.poll() is None
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    killed = next(t for t in trials(url) if t.state.name == "RUNNING")
    survivors = [worker(tmp_path, url, i, grace=6) for i in (2, 3)]
    outputs = [p.communicate(timeout=600) for p in survivors]
    assert [p.returncode for p in survivors] == [0, 0], [e for _, e in outputs]
    final = {t.number: t for t in trials(url)}
    assert final[killed.number].state.name == "FAIL"
    retries = [t for t in final.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == killed.params  # the same candidate, run again
    assert len([t for t in final.values() if t.state.name == "COMPLETE"]) == 4
