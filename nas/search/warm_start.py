"""Warm start: a new study begins from an earlier study's front, and reuses its trained models.

The front's parameters are enqueued as the first trials. A candidate that differs from one of the earlier trained
models only in how it is compressed (pruning, fine-tuning, precision, calibration) starts from those trained
weights and goes straight to compression, instead of being trained again from scratch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import optuna

from nas.errors import ConfigError, StudyError
from nas.search.study import StudySettings, load_existing, open_storage, storage_url
from nas.spec import Spec

log = logging.getLogger("nas")

TRAINED_WEIGHTS = "trained.pt"
"""A pruned trial's weights before pruning: what a compression-only variant of it starts from."""


@dataclass(frozen=True)
class TrainedModel:
    study: str
    trial: int
    weights: Path


def training_key(spec: Spec) -> str:
    """Everything that decides the trained weights: architecture, input, recipe, and distillation (which changes
    the training loss); not what is done after training."""
    c = spec.compression
    distill = {"distill": c.distill, "temperature": c.temperature, "alpha": c.alpha} if c.distill else {}
    return json.dumps({**spec.model_dump(mode="json", exclude={"compression", "baseline"}), **distill},
                      sort_keys=True)


@dataclass
class WarmStart:
    study: str
    params: list[tuple[int, dict[str, object]]]
    """(earlier trial, its Optuna parameters) for each front member, in front order."""
    trained: dict[str, TrainedModel]

    def trained_for(self, spec: Spec) -> TrainedModel | None:
        return self.trained.get(training_key(spec))


def load_warm_start(results: Path, name: str, settings: StudySettings, storage: str | None) -> WarmStart:
    """The earlier study's front and trained models; it must be the same task on the same hardware profile."""
    folder = Path(results) / name
    if not (folder / "settings.json").exists():
        raise ConfigError(f"--warm-start {name}: no study folder {folder} (give a study name under --results)")
    earlier = StudySettings.model_validate(json.loads((folder / "settings.json").read_text()))
    for key in ("task", "hardware"):
        if getattr(earlier, key) != getattr(settings, key):
            raise ConfigError(f"--warm-start {name}: it is a {key} {getattr(earlier, key)!r} study, this one "
                              f"{getattr(settings, key)!r}; warm start needs the same task and hardware profile")
    pareto = folder / "pareto.json"
    if not pareto.exists():
        raise StudyError(f"--warm-start {name}: the study has no pareto.json yet; let it finish (or run "
                         f"`nas report --study {name}`) first")
    members = json.loads(pareto.read_text())["members"]
    url = storage if storage and not (folder / "study.db").exists() else storage_url(None, Path(results), name)
    study = load_existing(name, open_storage(url))
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    params = [(m["trial"], dict(by_number[m["trial"]].params)) for m in members if m["trial"] in by_number]
    trained = {}
    for trial_dir in (folder / "trials").glob("*"):
        result, spec_file = trial_dir / "result.json", trial_dir / "spec.json"
        if not (trial_dir.name.isdigit() and result.exists() and spec_file.exists()):
            continue
        spec = Spec.load(spec_file)
        weights = trial_dir / (TRAINED_WEIGHTS if spec.compression.channels else "model.pt")
        if weights.exists():
            trained[training_key(spec)] = TrainedModel(name, int(trial_dir.name), weights)
    return WarmStart(name, params, trained)


def enqueue_front(study: optuna.Study, warm: WarmStart) -> int:
    for number, params in warm.params:
        study.enqueue_trial(params, user_attrs={"warm_start": {"study": warm.study, "trial": number}})
    log.info("warm start: enqueued %d front member(s) of study %r", len(warm.params), warm.study)
    return len(warm.params)
