"""Creating, resuming and opening studies: storage, sampler, and the settings a resume must match."""

from __future__ import annotations

import platform
import re
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict

from nas.defaults import GRACE_PERIOD_S, SAMPLERS
from nas.errors import ConfigError, StudyError, unknown_name
from nas.hardware import cpu_name
from nas.hardware.onnxruntime_cpu import available_threads
from nas.search.constraints import Constraints

SETTINGS_ATTR = "nas_settings"
RUN_ATTR = "nas_run"
ENVIRONMENT_ATTR = "nas_environment"
HEARTBEAT_INTERVAL_S = 10
SCHEMA_RETRIES = 5


class StudySettings(BaseModel):
    """Stored in the study itself, so a resume (or another worker) is checked against it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    space: str
    space_digest: str
    hardware: str
    hardware_digest: str
    objectives: list[str]
    directions: list[str]
    max_latency_ms: float | None
    min_sensitivity: float | None
    target_sensitivity: float
    data: str
    data_fingerprint: str
    seed: int
    epochs: int | None = None
    """--epochs, the cap on every trial's training: records made under another cap do not compare."""
    latency_method: str = "measured"
    """measured (here), remote (an agent on the device) or estimated: a study never mixes them."""
    fidelity: dict[str, Any] | None = None
    """Multi-fidelity rungs: changing them would rank trials against records made under other rules."""
    strategy: dict[str, Any] | None = None
    """None: every candidate trains; one-shot: its supernet's epochs (a resume with other ones would compare
    candidates scored with two supernets' weights)."""

    # What must match for a study to resume (settled point 12); seed and sampler may change between runs.
    STRICT: ClassVar[tuple[str, ...]] = ("task", "space_digest", "hardware_digest", "objectives", "max_latency_ms",
                               "min_sensitivity", "target_sensitivity", "data_fingerprint",
                               "latency_method", "fidelity", "epochs", "strategy")

    @property
    def constraints(self) -> Constraints:
        """The study's budget and floor, as every feasibility check reads them."""
        return Constraints(max_latency_ms=self.max_latency_ms, min_sensitivity=self.min_sensitivity)

    def differences(self, stored: StudySettings) -> list[str]:
        out = []
        for key in self.STRICT:
            mine, theirs = getattr(self, key), getattr(stored, key)
            if mine != theirs:
                label = {"space_digest": f"search space ({stored.space} -> {self.space}, content)",
                         "hardware_digest": f"hardware profile ({stored.hardware} -> {self.hardware}, content)",
                         "data_fingerprint": f"data ({stored.data} -> {self.data})"}.get(key, key)
                out.append(label if key.endswith(("digest", "fingerprint")) else f"{key} ({theirs} -> {mine})")
        return out


def default_study_name(task: str, hardware: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{task}-{Path(hardware).stem}")


def storage_url(storage: str | None, results_dir: Path, study: str) -> str:
    if storage:
        return storage
    path = (results_dir / study).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'study.db'}"


def retry_once() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """A dead process's trial is run once more, with the same parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)


def open_storage(url: str, *, grace_period: float = GRACE_PERIOD_S) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`.

    RDB URLs (sqlite, postgresql, mysql, ...) get heartbeats: a trial whose process died is failed once its
    heartbeat is `grace_period` seconds old, and retried once with the same parameters. `journal:PATH` is Optuna's
    journal file, for several processes on one machine without a database (no heartbeats: a killed process's
    trial stays RUNNING).
    """
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    if not re.match(r"^[a-z0-9+]+://", url):
        raise ConfigError(f"--storage {url!r} is not a database URL (e.g. sqlite:///results/s/study.db, "
                          "postgresql://user@host/db or journal:results/s/journal.log)")
    # psycopg (3) is the PostgreSQL driver nas installs; SQLAlchemy's plain postgresql:// means psycopg2.
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    interval = max(1, int(grace_period // 6))

    def create() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=interval, grace_period=int(grace_period),
                heartbeat_stale_trial_callback=retry_once(),
            )

    try:
        for _ in range(SCHEMA_RETRIES):
            try:
                return create()
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
                if "exist" not in str(exc) and "UNIQUE" not in str(exc):
                    raise
                time.sleep(0.5)  # processes created the schema at once; another won, so use its tables
        return create()
    except Exception as exc:  # SQLAlchemy raises many types for a bad or unreachable URL
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"cannot open storage {url!r}: {first}") from None


def make_sampler(name: str, *, seed: int, population: int) -> optuna.samplers.BaseSampler:
    """Constraints reach the samplers through `Trial.set_constraint` (Optuna 5), not a constraints function."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=population)
    if name == "gp":  # Gaussian-process log-EHVI; multi-objective and constrained in Optuna 5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=population)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(unknown_name("sampler", name, SAMPLERS))


def environment() -> dict[str, Any]:
    versions = {}
    for package in ("torch", "torchvision", "timm", "optuna", "onnx", "onnxruntime", "numpy", "fvcore", "nas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_name(),
            "threads": available_threads(), "packages": versions}


def create_or_resume(
    name: str, storage: optuna.storages.BaseStorage, settings: StudySettings, sampler: optuna.samplers.BaseSampler
) -> tuple[optuna.Study, bool]:
    """The study and whether it was created now. A resume with different settings is refused."""
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = study.user_attrs.get(SETTINGS_ATTR)
        if stored is None:
            raise StudyError(f"study {name!r} exists in this storage but was not created by nas")
        diffs = settings.differences(StudySettings.model_validate(stored))
        if diffs:
            raise StudyError(f"study {name!r} exists with other settings: {'; '.join(diffs)}. Use the same "
                             "settings to resume it, or a new --study name")
        return study, False
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=settings.directions)
    study.set_user_attr(SETTINGS_ATTR, settings.model_dump())
    study.set_user_attr(ENVIRONMENT_ATTR, environment())
    return study, True


def count_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def load_existing(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
    if name not in names:
        raise StudyError(unknown_name("study", name, names) if names else f"no study {name!r}: the storage is empty")
    return optuna.load_study(study_name=name, storage=storage)


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Completed, infeasible (pruned) and genuinely failed trials are spent; interrupted or stale ones are not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") == "error"


def fail_orphans(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial now, and retry each once, as a heartbeat timeout would.

    Only for a study that one process owns (the default local SQLite file): a trial still RUNNING when that
    process starts was left by a process that is gone (killed, or the machine restarted).
    """
    orphans = study.get_trials(states=(TrialState.RUNNING,))  # copies: the retry must not inherit `failure`
    retry = retry_once()
    for trial in orphans:
        study._storage.set_trial_user_attr(trial._trial_id, "failure", "found running when the study resumed; "
                                           "the process that ran it is gone")
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        retry(study, trial)
    return [t.number for t in orphans]


def budget_state(study: optuna.Study, before: int | None = None) -> tuple[int, int]:
    """(spent, running) trials; with `before`, only RUNNING trials numbered below it count as running."""
    trials = study.get_trials(deepcopy=False)
    spent = sum(counts_toward_budget(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING and (before is None or t.number < before) for t in trials)
    return spent, running
