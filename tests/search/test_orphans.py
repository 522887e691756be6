"""A trial left running by a killed process is failed and retried once, and the retry starts clean."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from nas.search.study import fail_orphans, open_storage


def test_retry_of_a_killed_trial_does_not_carry_its_failure(tmp_path):
    """The retry used to inherit the dead trial's `failure` attribute, so it read as failed before it ran."""
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    dead = study.ask({"x": optuna.distributions.IntDistribution(1, 4)})
    dead.set_user_attr("baseline", "reference")  # what the process had set before it was killed
    study.tell(study.ask(), [0.5])  # a completed trial, which must stay as it was
    before = study.get_trials(states=(TrialState.COMPLETE,))

    assert fail_orphans(study) == [dead.number]

    trials = study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    assert "process that ran it is gone" in trials[dead.number].user_attrs["failure"]
    retry = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retry) == 1
    assert retry[0].params == dead.params
    assert retry[0].user_attrs == {"baseline": "reference"}
    assert study.get_trials(states=(TrialState.COMPLETE,)) == before
