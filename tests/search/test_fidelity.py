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
from optuna.distributions import FloatDistribution

from conftest import QUICK_PROFILE, REPO, TINY_XRAY
from nas.errors import ConfigError
from nas.search.fidelity import (
    Fidelity, due_continuations, enqueue_continuations, hypervolume_contributions, parse_fidelity, promotion,
    promotion_order, rung_places,
)
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


@pytest.mark.parametrize("rungs, factor, brackets, promote_after, message", [
    ("1,3,9", 1, None, None, "reduction_factor must be at least 2"),
    ("1,3,9", 0, None, None, "reduction_factor must be at least 2"),
    ("3,1", None, None, None, "rungs must be increasing"),
    ("0,2", None, None, None, "rungs must be increasing epoch counts of at least 1"),
    ("1,x", None, None, None, "give epoch counts separated by commas"),
    ("1,3", None, 3, None, "brackets must be between 1 and the number of rungs (2)"),
    ("1,3", None, None, 0, "promote_after must be at least 1 result"),
])
def test_rung_settings_that_cannot_work_are_refused(rungs, factor, brackets, promote_after, message):
    with pytest.raises(ConfigError, match="--rungs") as info:
        parse_fidelity(rungs, factor, brackets, None, "--rungs", promote_after)
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
        if "continues" in t.user_attrs:  # trained on from the stopped trial's 1-epoch checkpoint
            assert set(t.user_attrs["rungs"]) == {"3"}
            assert len(t.user_attrs["result"]["train_log"]["epoch_losses"]) == 2
        else:
            assert set(t.user_attrs["rungs"]) == {"1", "3"}
            assert len(t.user_attrs["result"]["train_log"]["epoch_losses"]) == 3  # once through, not retrained
    for t in pruned:
        assert set(t.user_attrs["rungs"]) == {"1"}
        assert t.user_attrs["stopped"]["epochs"] == 1 and "at the 1-epoch rung" in t.user_attrs["stopped"]["reason"]
        assert 0 <= t.user_attrs["rungs"]["1"]["metrics"]["auc"] <= 1
        stopped = json.loads((run.context.trial_dir(t.number) / "stopped.json").read_text())
        assert stopped["reason"] == t.user_attrs["stopped"]["reason"]
        assert (run.context.trial_dir(t.number) / "checkpoint.pt").exists()  # kept: it may be continued
    # The first trial is not promoted for being first: its rung holds 1 of the 2 results promotion needs.
    assert trials[0].state.name == "PRUNED" and trials[0].user_attrs["stopped"]["reason"].startswith(
        "waits at the 1-epoch rung (bracket 0): 1 of the 2 results")
    # The rule held at every decision: a pruned trial ranked below the places its rung had when it was decided.
    for t in pruned[1:]:
        rank, of = (int(x) for x in t.user_attrs["stopped"]["reason"].split("ranked ")[1].split(" at")[0].split(" of "))
        assert rank > max(1, of // 2)
    doc = finalize(run, log=lambda _: None)
    assert {m["trial"] for m in doc["members"]} <= {t.number for t in completed}
    assert doc["trials"]["PRUNED"] == len(pruned)
    members = {m["trial"] for m in doc["members"]}
    for t in pruned:
        assert (run.context.trial_dir(t.number) / "checkpoint.pt").exists() == (t.number in members)


@pytest.mark.slow
def test_a_stopped_trial_is_continued_from_its_checkpoint_once_it_ranks_among_the_top(tmp_path):
    first = run_search(mf_config(tmp_path, trials=1))
    study = first.study
    assert study.trials[0].state.name == "PRUNED"  # alone at its rung: it waits for a second result
    checkpoint = first.context.trial_dir(0) / "checkpoint.pt"
    assert checkpoint.exists()
    # A worse result reaches the rung (as another worker's would): trial 0 now ranks first of 2 and is due.
    worse = [0.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1e6 for d in study.directions]
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={
        "rungs": {"1": {"metrics": {}, "objectives": worse}}, "bracket": 0,
        "stopped": {"epochs": 1, "reason": "ranked 2 of 2"}}))
    run = run_search(mf_config(tmp_path, trials=3))
    continuation = run.study.trials[2]
    assert continuation.state.name == "COMPLETE", continuation.user_attrs.get("failure")
    assert continuation.user_attrs["continues"] == {"trial": 0, "epochs": 1}
    assert continuation.params == run.study.trials[0].params
    assert set(continuation.user_attrs["rungs"]) == {"3"}  # the 1-epoch result is trial 0's, counted once
    assert len(continuation.user_attrs["result"]["train_log"]["epoch_losses"]) == 2  # epochs 2 and 3 only
    assert run.study.trials[0].state.name == "PRUNED"


def _stopped(rung: str, value: float, *, epochs: int = 1) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, params={"x": value}, distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"rungs": {rung: {"metrics": {}, "objectives": [value, 1.0]}}, "bracket": 0,
                    "stopped": {"epochs": epochs, "reason": "waits"}})


def test_a_rung_promotes_nobody_before_it_holds_enough_results():
    assert [rung_places(n, 2, 2) for n in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [rung_places(n, 3, 1) for n in range(1, 7)] == [1, 1, 1, 1, 1, 2]  # the eager rule: first one goes on
    assert promotion([(0.9, 1.0)], DIRECTIONS, 0, 3, min_results=3) == (False, 1, 0)
    with pytest.raises(ValueError, match="promote_after must be at least 1"):
        Fidelity(rungs=[1, 3], promote_after=0)
    assert Fidelity(rungs=[1, 3], reduction_factor=4).min_results == 4


def test_stopped_trials_that_now_rank_among_the_top_are_continued_once():
    study = optuna.create_study(directions=["maximize", "minimize"])
    fidelity = Fidelity(rungs=[1, 3, 9], reduction_factor=2)
    study.add_trial(_stopped("1", 0.9))  # waited: alone at its rung
    assert due_continuations(study, fidelity, DIRECTIONS) == []
    study.add_trial(_stopped("1", 0.6))
    study.add_trial(_stopped("3", 0.7, epochs=3))  # a rung of its own, still alone there
    assert [(t.number, e) for t, e in due_continuations(study, fidelity, DIRECTIONS)] == [(0, 1)]
    assert enqueue_continuations(study, fidelity, DIRECTIONS, resumable=lambda n: False) == []  # no checkpoint
    assert enqueue_continuations(study, fidelity, DIRECTIONS, resumable=lambda n: True) == [0]
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1
    assert enqueue_continuations(study, fidelity, DIRECTIONS, resumable=lambda n: True) == []  # queued already
    continuation = study.ask()  # the next trial asked is the continuation, with trial 0's parameters
    assert continuation.suggest_float("x", 0, 1) == 0.9
    assert continuation.user_attrs == {"continues": {"trial": 0, "epochs": 1}, "bracket": 0}


def _search_command(tmp_path, *extra):
    return [sys.executable, "-m", "nas.cli.main", "search", "--space", "xray-tiny", "--data", str(TINY_XRAY),
            "--hardware", str(QUICK_PROFILE), "--study", "mf", "--results", str(tmp_path / "results"), "--trials", "3",
            "--epochs", "3", "--rungs", "1,3", "--reduction-factor", "2", "--promote-after", "1", "--no-baselines",
            "--no-progress", *extra]


def _kill_after_first_rung(tmp_path):
    """Start a search and SIGKILL it once trial 0 has saved its first-rung checkpoint (with --promote-after 1 a
    lone first trial is promoted, so it is training towards the next rung when killed)."""
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
    others = [t.state.name for t in study.trials if t.number not in (0, retry.number) and t.state.name != "WAITING"]
    assert len(others) == 2 and set(others) <= {"COMPLETE", "PRUNED"}  # the failed retry counts; the rest ran
