"""Multi-fidelity successive halving: the promotion rule, rung records, pruned trials and resuming a killed run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest

from conftest import QUICK_PROFILE, REPO, SMALL_XRAY, TINY_XRAY
from nas.errors import ConfigError
from nas.search.fidelity import Fidelity, hypervolume_contributions, parse_fidelity, promotion, promotion_order
from nas.search.final import finalize
from nas.search.runner import SearchConfig, run_search, study_fidelity
from nas.spaces import load_space

# (validation AUC, p95 ms): A and E are the same point; C is dominated by A; the rest form the first front.
RUNG = {"A": (0.90, 2.0), "B": (0.85, 1.0), "C": (0.80, 3.0), "D": (0.95, 5.0), "E": (0.90, 2.0), "F": (0.70, 0.5)}
DIRECTIONS = ("maximize", "minimize")


def test_promotion_order_on_a_hand_worked_rung():
    values = list(RUNG.values())
    # Scaled over the rung (AUC loss over 0.25, latency over 4.5; 0 best, 1 worst): A = E = (0.2, 0.333),
    # B = (0.4, 0.111), C = (0.6, 0.556), D = (0, 1), F = (1, 0). Front 1 = A B D E F; C is dominated by A.
    # Contributions against (1.1, 1.1): A = 0.2 x 0.667 = 0.133 and B = 0.6 x 0.222 = 0.133 tie (A first, by
    # position), D = 0.2 x 0.1 = 0.02, F = 0.1 x 0.111 = 0.011, E (a copy of A) adds nothing. Front 2 = C.
    order = [list(RUNG)[i] for i in promotion_order(values, DIRECTIONS)]
    assert order == ["A", "B", "D", "F", "E", "C"]
    names = list(RUNG)
    assert promotion(values, DIRECTIONS, names.index("A"), 3) == (True, 1, 2)
    assert promotion(values, DIRECTIONS, names.index("B"), 3) == (True, 2, 2)
    assert promotion(values, DIRECTIONS, names.index("D"), 3) == (False, 3, 2)
    assert promotion(values, DIRECTIONS, names.index("D"), 2) == (True, 3, 3)
    assert promotion(values, DIRECTIONS, names.index("C"), 2) == (False, 6, 3)


def test_a_fast_inaccurate_early_trial_does_not_hold_the_only_place():
    # Crowding distance would rank both ends of the front first and keep the earlier, fast 0.78-AUC trial; its
    # hypervolume contribution (0.1 x 0.42) is far below the accurate one's (1.0 x 0.68).
    values = [(0.78, 0.34), (0.95, 0.45), (0.90, 0.60)]
    assert promotion_order(values, DIRECTIONS) == [1, 0, 2]
    assert promotion(values, DIRECTIONS, 0, 3) == (False, 2, 1)


def test_a_lone_trial_is_promoted_and_contributions_are_exclusive_volumes():
    assert promotion([(0.5, 9.0)], DIRECTIONS, 0, 3) == (True, 1, 1)
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.5, 0.5]])
    assert hypervolume_contributions(front) == pytest.approx([0.1 * 0.5, 0.5 * 0.5, 0.1 * 0.5, 0.0])


@pytest.mark.parametrize("rungs, factor, brackets, message", [
    ("1,3,9", 1, None, "reduction_factor must be at least 2"),
    ("3,1", None, None, "rungs must be increasing"),
    ("0,2", None, None, "rungs must be increasing epoch counts of at least 1"),
    ("1,x", None, None, "give epoch counts separated by commas"),
    ("1,3", None, 3, "brackets must be between 1 and the number of rungs (2)"),
])
def test_rung_settings_that_cannot_work_are_refused(rungs, factor, brackets, message):
    with pytest.raises(ConfigError, match="--rungs") as info:
        parse_fidelity(rungs, factor, brackets, None, "--rungs")
    assert message in str(info.value)


def test_a_rung_above_the_epoch_budget_names_the_allowed_range():
    config = SearchConfig(space="xray-tiny", rungs="1,3,9", epochs=4)
    with pytest.raises(ConfigError, match=r"rung 9 is above the epoch budget of 4; rungs must lie in 1\.\.4"):
        study_fidelity(config, load_space("xray-tiny"))


def test_the_default_space_rungs_follow_a_smaller_epoch_cap():
    space = load_space("xray")
    assert study_fidelity(SearchConfig(), space) == Fidelity(rungs=[1, 3, 9], reduction_factor=3)
    assert study_fidelity(SearchConfig(epochs=4), space).rungs == [1, 3, 4]
    assert study_fidelity(SearchConfig(epochs=1), space) is None  # one rung: plain full training
    assert study_fidelity(SearchConfig(rungs="none"), space) is None


def mf_config(tmp_path, **overrides) -> SearchConfig:
    base = dict(space="xray-tiny", data=str(TINY_XRAY), hardware=str(QUICK_PROFILE), study="mf",
                results=tmp_path / "results", trials=6, epochs=3, rungs="1,3", reduction_factor=2, progress=False,
                baselines=False)
    return SearchConfig(**{**base, **overrides})


@pytest.mark.slow
def test_a_multi_fidelity_search_ends_with_completed_and_pruned_trials(tmp_path):
    run = run_search(mf_config(tmp_path))
    trials = run.study.get_trials()
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert completed and pruned and len(completed) + len(pruned) == 6
    for t in completed:
        assert set(t.user_attrs["rungs"]) == {"1", "3"}
        assert len(t.user_attrs["result"]["train_log"]["epoch_losses"]) == 3  # trained once through, not retrained
    for t in pruned:
        assert set(t.user_attrs["rungs"]) == {"1"}
        assert t.user_attrs["stopped"]["epochs"] == 1 and "at the 1-epoch rung" in t.user_attrs["stopped"]["reason"]
        assert 0 <= t.user_attrs["rungs"]["1"]["metrics"]["auc"] <= 1
        stopped = json.loads((run.context.trial_dir(t.number) / "stopped.json").read_text())
        assert stopped["reason"] == t.user_attrs["stopped"]["reason"]
        assert not (run.context.trial_dir(t.number) / "checkpoint.pt").exists()
    # The rule held at every decision: a pruned trial ranked below the places its rung had when it was decided.
    for t in pruned:
        rank, of = (int(x) for x in t.user_attrs["stopped"]["reason"].split("ranked ")[1].split(" at")[0].split(" of "))
        assert rank > max(1, of // 2)
    doc = finalize(run, log=lambda _: None)
    assert {m["trial"] for m in doc["members"]} <= {t.number for t in completed}
    assert doc["trials"]["PRUNED"] == len(pruned)


def _search_command(tmp_path, *extra):
    return [sys.executable, "-m", "nas.cli.main", "search", "--space", "xray-tiny", "--data", str(SMALL_XRAY),
            "--hardware", str(QUICK_PROFILE), "--study", "mf", "--results", str(tmp_path / "results"), "--trials", "3",
            "--epochs", "3", "--rungs", "1,3", "--reduction-factor", "2", "--no-baselines", "--no-progress", *extra]


def _kill_after_first_rung(tmp_path):
    """Start a search and SIGKILL it once trial 0 has saved its first-rung checkpoint (a lone first trial is
    always promoted, so it is training towards the next rung when killed)."""
    proc = subprocess.Popen(_search_command(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "results" / "mf" / "trials" / "0" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'results' / 'mf' / 'study.db'}")
    return optuna.load_study(study_name="mf", storage=storage)


@pytest.mark.slow
def test_a_killed_multi_fidelity_search_resumes_from_its_rungs(tmp_path):
    killed = _kill_after_first_rung(tmp_path)
    before = killed.trials[0]
    assert before.state.name == "RUNNING" and set(before.user_attrs["rungs"]) == {"1"}
    proc = subprocess.run(_search_command(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="mf", storage=f"sqlite:///{tmp_path / 'results' / 'mf' / 'study.db'}")
    first, retry = study.trials[0], next(t for t in study.trials if t.system_attrs.get("failed_trial") == 0)
    assert first.state.name == "FAIL" and first.user_attrs["rungs"] == before.user_attrs["rungs"]  # kept intact
    assert retry.state.name == "COMPLETE" and retry.params == first.params
    assert retry.user_attrs["rungs"]["1"] == before.user_attrs["rungs"]["1"]
    # It resumed from the killed attempt's checkpoint: only epochs 2 and 3 were trained again.
    assert len(retry.user_attrs["result"]["train_log"]["epoch_losses"]) == 2


@pytest.mark.slow
def test_a_corrupt_checkpoint_fails_that_trial_and_the_study_goes_on(tmp_path):
    _kill_after_first_rung(tmp_path)
    (tmp_path / "results" / "mf" / "trials" / "0" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    proc = subprocess.run(_search_command(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="mf", storage=f"sqlite:///{tmp_path / 'results' / 'mf' / 'study.db'}")
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state.name == "FAIL" and "checkpoint" in retry.user_attrs["failure"]
    assert "is corrupt" in retry.user_attrs["failure"]
    others = [t.state.name for t in study.trials if t.number not in (0, retry.number)]
    assert len(others) == 2 and set(others) <= {"COMPLETE", "PRUNED"}  # the failed retry counts; the rest ran
