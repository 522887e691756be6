"""Multi-fidelity scheduling: multi-objective successive halving over training epochs, decided on ask/tell.

Optuna's pruners do not support multi-objective studies, so nas decides itself. A trial trains to each rung's
epoch count in turn; at every rung it is ranked against all trials of its bracket that reached that rung
(non-dominated sorting on the study's objectives, ties broken by hypervolume contribution, then by trial number)
and continues only while it is within the top max(1, n // reduction_factor), the rule of Optuna's single-objective
SuccessiveHalvingPruner.

Promotion is asynchronous, as in ASHA: a rung promotes nobody until it holds `min_results` results (the reduction
factor by default), so the first trials to arrive are not promoted just for being early. A trial that stops at a
rung keeps its checkpoint; whenever a later result puts it among the rung's top places, a continuation trial with
its parameters is enqueued and trains on from that checkpoint (`enqueue_continuations`). A continuation is a trial
of its own and counts toward the budget.

Why hypervolume contribution and not NSGA-II's crowding distance: crowding gives both ends of a front infinite
distance, so the fastest candidate always ranks first however poor its accuracy, and a rung with one or two places
kept promoting it (a benchmark run stopped every other candidate behind a 0.78-AUC model that way). Contribution
weighs what each point alone adds to the front, with the objectives scaled to the rung's own range.

The rung records live on the trials in the study storage, so several workers promote consistently and a resumed
search keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from nas.errors import ConfigError
from nas.search.hypervolume import hypervolume
from nas.search.pareto import _as_minimized, dominates
from nas.spaces import Fidelity

HV_MARGIN = 0.1
"""The hypervolume reference for ranking a rung: this far beyond the worst value of each scaled objective."""
RUNGS_ATTR = "rungs"
"""Trial user attribute: {epochs (str): {"metrics": {...}, "objectives": [...]}} for every rung it reached; below
the top rung the float model's validation metrics, at the top the completed (deployed) result's."""
BRACKET_ATTR = "bracket"
COMPETING = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
CONTINUES_ATTR = "continues"
"""Trial user attribute of a continuation: {"trial": the stopped trial it continues, "epochs": its rung}."""
STOPPED_ATTR = "stopped"
"""Trial user attribute of a trial stopped at a rung: {"epochs": the rung, "reason": ...}."""


def parse_fidelity(rungs: str | Sequence[int] | None, reduction_factor: int | None, brackets: int | None,
                   declared: Fidelity | None, where: str, promote_after: int | None = None) -> Fidelity | None:
    """Flags override the space's `fidelity` block field by field; `--rungs none` turns multi-fidelity off."""
    if isinstance(rungs, str):
        if rungs.strip().lower() in ("none", "off", "0"):
            return None
        try:
            rungs = [int(r) for r in rungs.replace(" ", "").split(",") if r]
        except ValueError:
            raise ConfigError(f"--rungs {rungs!r}: give epoch counts separated by commas, e.g. 1,3,9 "
                              "(or none for full training of every trial)") from None
    if rungs is None and declared is None:
        if reduction_factor is not None or brackets is not None or promote_after is not None:
            raise ConfigError("--reduction-factor, --brackets and --promote-after need rungs: pass --rungs (e.g. "
                              "1,3,9) or use a search space with a `fidelity` block")
        return None
    base = declared.model_dump() if declared is not None else {}
    given = {"reduction_factor": reduction_factor, "brackets": brackets, "promote_after": promote_after}
    fields = {"rungs": list(rungs) if rungs is not None else base.get("rungs"),
              "reduction_factor": base.get("reduction_factor", 3), "brackets": base.get("brackets", 1),
              "promote_after": base.get("promote_after")}
    fields |= {key: value for key, value in given.items() if value is not None}  # a flag of 0 is refused, not dropped
    try:
        return Fidelity(**fields)
    except ValidationError as exc:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"{where}: {message}") from None


def promotion_order(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices best first: by non-dominated front, then larger hypervolume contribution within the front, then
    position (earlier trial)."""
    points = _as_minimized(values, directions) if len(values) else np.empty((0, len(directions)))
    scaled = _scaled(points)
    remaining = list(range(len(points)))
    order: list[int] = []
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining if j != i)]
        gain = np.round(hypervolume_contributions(scaled[front]), 12)  # equal contributions tie exactly
        order += [i for _, i in sorted(zip(-gain, front), key=lambda t: (t[0], t[1]))]
        remaining = [i for i in remaining if i not in front]
    return order


def _scaled(points: np.ndarray) -> np.ndarray:
    """Each (minimised) objective mapped to [0, 1] over the rung: 0 the best value there, 1 the worst."""
    if len(points) == 0:
        return points
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / np.where(high > low, high - low, 1.0)


def hypervolume_contributions(front: np.ndarray, margin: float = HV_MARGIN) -> np.ndarray:
    """What each point of a front (minimised, scaled to [0, 1]) alone adds to its hypervolume, against a reference
    `margin` beyond the worst value, so the ends of the front still count. A repeated point counts once: its first
    copy gets the contribution, later copies add nothing."""
    minimize = ["minimize"] * front.shape[1]
    reference = [1.0 + margin] * front.shape[1]
    total = hypervolume(front, minimize, reference)
    gains = np.zeros(len(front))
    for k, point in enumerate(front):
        same = np.all(front == point, axis=1)
        if not same[:k].any():
            gains[k] = total - hypervolume(front[~same], minimize, reference)
    return gains


def promotion(values: Sequence[Sequence[float]], directions: Sequence[str], index: int,
              reduction_factor: int, min_results: int = 1) -> tuple[bool, int, int]:
    """(promoted, rank from 1, places): whether point `index` is within the top places of its rung."""
    order = promotion_order(values, directions)
    places = rung_places(len(values), reduction_factor, min_results)
    rank = order.index(index) + 1
    return rank <= places, rank, places


def rung_places(results: int, reduction_factor: int, min_results: int) -> int:
    """How many of a rung's `results` go on: none before it holds `min_results`, then max(1, n // factor)."""
    return 0 if results < min_results else max(1, results // reduction_factor)


def rung_competitors(study: optuna.Study, bracket: int, epochs: int,
                     trials: Sequence[FrozenTrial] | None = None) -> list[tuple[int, list[float]]]:
    """(trial number, objective values) of every trial in `bracket` that reached the rung, read from storage
    unless `trials` (the study's, read once) are given.

    Failed attempts are left out: a killed trial's retry carries its records, and they must count once."""
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    out = []
    for t in trials:
        record = t.user_attrs.get(RUNGS_ATTR, {}).get(str(epochs))
        if t.state in COMPETING and record is not None and t.user_attrs.get(BRACKET_ATTR, 0) == bracket:
            out.append((t.number, record["objectives"]))
    return sorted(out)


def due_continuations(study: optuna.Study, fidelity: Fidelity,
                      directions: Sequence[str]) -> list[tuple[FrozenTrial, int]]:
    """(stopped trial, rung) for every trial that stopped at a rung where it now ranks within the top places and
    that no trial continues yet. Trials still running decide for themselves when they reach a rung."""
    trials = study.get_trials(deepcopy=False)
    continued = {t.user_attrs[CONTINUES_ATTR]["trial"] for t in trials if CONTINUES_ATTR in t.user_attrs}
    by_number = {t.number: t for t in trials}
    due = []
    for bracket in range(fidelity.brackets):
        for epochs in fidelity.rungs_for(bracket)[:-1]:
            competitors = rung_competitors(study, bracket, epochs, trials)
            order = promotion_order([v for _, v in competitors], directions)
            places = rung_places(len(competitors), fidelity.reduction_factor, fidelity.min_results)
            for index in order[:places]:
                trial = by_number[competitors[index][0]]
                stopped = trial.user_attrs.get(STOPPED_ATTR, {})
                if trial.state == TrialState.PRUNED and stopped.get("epochs") == epochs \
                        and trial.number not in continued:
                    due.append((trial, epochs))
    return sorted(due, key=lambda d: d[0].number)


def enqueue_continuations(study: optuna.Study, fidelity: Fidelity, directions: Sequence[str],
                          resumable: Callable[[int], bool]) -> list[int]:
    """Enqueue a continuation of each due stopped trial whose checkpoint is still there (`resumable`); returns
    the numbers of the trials continued. Several workers may race here: at worst one trial is continued twice."""
    out = []
    for trial, epochs in due_continuations(study, fidelity, directions):
        if resumable(trial.number):
            study.enqueue_trial(trial.params, user_attrs={
                CONTINUES_ATTR: {"trial": trial.number, "epochs": epochs},
                BRACKET_ATTR: int(trial.user_attrs.get(BRACKET_ATTR, 0))})
            out.append(trial.number)
    return out
