"""Progress inside a trial: phases and epochs reach the log (no terminal) and the bar (terminal), with a clock
and an ETA, all on the given stream; the hooks do nothing when no search runs."""

from __future__ import annotations

import io
import re
import time

import pytest

from nas import progress
from nas.progress import StudyProgress, clock


def test_without_a_terminal_each_phase_is_a_log_line_with_clock_and_eta():
    log = io.StringIO()
    with StudyProgress(total=4, done=1, desc="s", terminal=False, file=log) as bar:
        bar.start_trial("trial 1 baseline resnet18")
        progress.phase("measuring")
        progress.phase("training")
        progress.epoch(1, 2)
        progress.epoch(2, 2)
        progress.phase("scoring")
        bar.end_trial(2, "best AUC 0.9000")
    lines = log.getvalue().splitlines()
    assert lines[0] == "  trial 1 baseline resnet18: measuring (0m00s), ETA ?"
    assert lines[2].startswith("  trial 1 baseline resnet18: training epoch 1 of 2 (0m00s), ETA ")
    assert "training epoch 2 of 2" in lines[3] and "scoring" in lines[4]
    assert "ETA ?" not in lines[3]  # half the training done: the rate is known
    assert lines[5].startswith("  [2/4 trials, 0m00s elapsed, ~") and lines[5].endswith(", best AUC 0.9000]")


def test_in_a_terminal_the_bar_ticks_during_a_trial():
    screen = io.StringIO()
    with StudyProgress(total=3, done=0, desc="s", terminal=True, file=screen) as bar:
        bar.start_trial("trial 0")
        progress.phase("training")
        progress.epoch(3, 5)
        time.sleep(progress.TICK_S * 2.5)  # the clock moves with no event from the trial
        assert bar.status().startswith("trial 0: training epoch 3 of 5 (0m0")
    drawn = screen.getvalue()
    clocks = set(re.findall(r"trial 0: training epoch 3 of 5 \((\d+m\d+s)\), ETA \d+m\d+s", drawn))
    assert len(clocks) >= 2 and "0/3" in drawn  # redrawn with a moving clock and a known ETA


def test_with_a_timeout_the_eta_never_runs_past_it():
    """A search of 10,000 trials stopped by --timeout 60 s: the ETA is what is left of the minute (and the running
    trial), not 10,000 trials' worth."""
    with StudyProgress(total=10_000, done=0, desc="s", terminal=False, file=io.StringIO(),
                       stop_at=time.monotonic() + 60) as bar:
        bar.start_trial("trial 0")
        progress.phase("training")
        progress.epoch(2, 2)
        time.sleep(0.05)
        assert 50 < bar.eta() <= 61
    with StudyProgress(total=10_000, done=0, desc="s", terminal=False, file=io.StringIO()) as bar:
        bar.start_trial("trial 0")
        progress.phase("training")
        progress.epoch(2, 2)
        time.sleep(0.05)
        assert bar.eta() > 100  # no timeout: every trial left counts


def test_a_pipelines_stages_share_the_training_phase_and_never_move_the_trial_back():
    """A two-stage nodule trial: the classifier's epochs restart at 1, and the screener's hard-negative pass restarts
    its own; before, each restart dropped the trial's share done and the ETA jumped from minutes to hours."""
    with StudyProgress(total=1, done=0, desc="s", terminal=False, file=io.StringIO()) as bar:
        bar.start_trial("trial 0")
        shares = []
        progress.phase("training", "screen", 1, 2)
        for k in (1, 2, 3, 4, 1, 2):  # four epochs, then a two-epoch mining pass
            progress.epoch(k, 4 if len(shares) < 4 else 2)
            shares.append(bar.fraction)
        progress.phase("training", "classify", 2, 2)
        progress.epoch(1, 4)
        assert bar.phase == "training classify epoch 1 of 4"
        shares.append(bar.fraction)
        progress.epoch(3, 4)
        shares.append(bar.fraction)
    low, high = progress.PHASES["training"]
    assert shares == sorted(shares) and shares[0] == low
    assert shares[-3] == shares[-4] and shares[-2] == pytest.approx((low + high) / 2)  # stage 2 starts halfway
    assert shares[-1] == pytest.approx(low + (high - low) * (0.5 + 0.5 * 2 / 4))


def test_hooks_do_nothing_outside_a_search():
    progress.phase("measuring")
    progress.epoch(1, 1)
    assert progress._current is None


def test_clock():
    assert (clock(65), clock(3 * 3600 + 120), clock(float("nan"))) == ("1m05s", "3h02m", "?")
