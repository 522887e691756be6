"""Interrupted trials, baselines first, run again on resume, once per interrupt, and the resume line says so."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from nas.search.resume import resume_line, retry_interrupted


def _interrupt(study: optuna.Study) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("failure", "interrupted (Ctrl-C)")
    trial.set_user_attr("failure_kind", "interrupted")
    study.tell(trial, state=TrialState.FAIL)
    return trial


def test_interrupted_baselines_are_retried_first_and_only_once() -> None:
    study = optuna.create_study(directions=["maximize"])
    done = study.ask()
    done.suggest_float("lr", 1e-4, 1e-1, log=True)
    study.tell(done, [0.9])
    candidate = _interrupt(study)  # trial 1, a sampled candidate
    for name, lr in (("mobilenetv3_small_100", 0.01), ("efficientnet_b0", 0.02)):  # trials 2 and 3
        study.enqueue_trial({"lr": lr}, user_attrs={"baseline": name})
        _interrupt(study)

    retried = retry_interrupted(study)
    assert [t.number for t in retried] == [2, 3, candidate.number]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs.get("baseline") for t in waiting] == ["mobilenetv3_small_100", "efficientnet_b0", None]
    assert [t.params["lr"] for t in waiting] == [0.01, 0.02, candidate.params["lr"]]
    assert all("failure_kind" not in t.user_attrs for t in waiting)
    assert resume_line(study, 20, retried) == (
        "1/20 done; trial 2 (baseline mobilenetv3_small_100) interrupted, retrying; "
        "trial 3 (baseline efficientnet_b0) interrupted, retrying; trial 1 interrupted, retrying")

    assert retry_interrupted(study) == []  # a second resume does not enqueue them again


def test_a_retry_interrupted_again_is_retried_again() -> None:
    study = optuna.create_study(directions=["maximize"])
    first = _interrupt(study)
    retry_interrupted(study)
    again = study.ask()  # the retry, with the first run's parameters
    assert again.suggest_float("lr", 1e-4, 1e-1, log=True) == first.params["lr"]
    again.set_user_attr("failure_kind", "interrupted")
    study.tell(again, state=TrialState.FAIL)
    (retried,) = retry_interrupted(study)
    assert retried.number == again.number
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["retry_history"] == [first.number, again.number]
    assert waiting.distributions == {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
