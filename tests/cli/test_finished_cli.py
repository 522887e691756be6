"""A finished study's front changes only when asked: re-running `nas search` keeps pareto.json as it is, a
different --epochs is refused, and `nas report --remeasure` re-measures it."""

from __future__ import annotations

import json

import pytest

from conftest import QUICK_PROFILE, SMALL_XRAY, run_nas

pytestmark = pytest.mark.slow
ARGS = ("search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(QUICK_PROFILE),
        "--no-baselines", "--no-progress", "--study", "f", "--trials", "1")


def test_finished_study_keeps_its_front_until_remeasured(tmp_path):
    first = run_nas(*ARGS, "--epochs", "1", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "trial 0: training epoch 1 of 1 (" in first.stderr  # progress inside the trial, on stderr: stdout is
    assert "trial 0: scoring (" in first.stderr  # the one JSON document
    pareto = tmp_path / "results" / "f" / "pareto.json"
    written, stamp = pareto.read_bytes(), pareto.stat().st_mtime_ns

    again = run_nas(*ARGS, "--epochs", "1", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "study 'f' is finished (1 trials): its front is kept as it is" in again.stderr
    assert "re-measuring" not in again.stderr
    assert pareto.read_bytes() == written and pareto.stat().st_mtime_ns == stamp
    assert json.loads(again.stdout) == json.loads(written)

    other = run_nas(*ARGS, "--epochs", "2", cwd=tmp_path)
    assert other.returncode == 2 and "epochs (1 -> 2)" in other.stderr

    remeasured = run_nas("report", "--study", "f", "--remeasure", cwd=tmp_path)
    assert remeasured.returncode == 0, remeasured.stderr
    assert "re-measuring" in remeasured.stderr and "re-measured: 1 member(s) on the front" in remeasured.stderr
    assert pareto.stat().st_mtime_ns != stamp
    assert [m["trial"] for m in json.loads(pareto.read_text())["members"]] == [0]
