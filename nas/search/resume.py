"""Resuming a study: interrupted trials run again (baselines first), and one line says what was found."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.study import budget_state

FAILURE_ATTRS = ("failure", "failure_kind")
"""The interrupted run's verdict, not carried to its retry (a retry that completes is not a failure)."""


def _interrupted(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") == "interrupted"


def retry_interrupted(study: optuna.Study) -> list[FrozenTrial]:
    """Enqueue every interrupted trial not retried yet, with its parameters, baselines first; return them.

    Ctrl-C or SIGTERM fails the running trial as interrupted, and baselines are enqueued only when a study is
    created, so without this the yardsticks a study promises would be lost to an interrupt. An interrupt is
    not the trial's fault, so it is retried however often it was interrupted; the retry carries Optuna's
    `retry_history`, which is how a second resume knows it was already enqueued.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    pending = [t for t in trials if _interrupted(t) and t.number not in retried]
    pending.sort(key=lambda t: ("baseline" not in t.user_attrs, t.number))
    for trial in pending:
        history = [*trial.system_attrs.get("retry_history", ()), trial.number]
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k not in FAILURE_ATTRS},
            system_attrs={**trial.system_attrs, "failed_trial": history[0], "retry_history": history},
        ))
    return pending


def resume_line(study: optuna.Study, total: int, retried: list[FrozenTrial]) -> str:
    """`4/20 done; trial 1 (baseline mobilenetv3_small_100) interrupted, retrying`."""
    done, _ = budget_state(study)
    parts = [f"{min(done, total)}/{total} done"]
    for trial in retried:
        baseline = trial.user_attrs.get("baseline")
        parts.append(f"trial {trial.number}{f' (baseline {baseline})' if baseline else ''} interrupted, retrying")
    return "; ".join(parts)
