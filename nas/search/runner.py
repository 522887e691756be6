"""The search loop: Optuna ask/tell (settled point 17), so nas decides when and how each trial trains."""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import optuna
import torch
from optuna.trial import TrialState
from tqdm import tqdm

from nas import interrupt
from nas.defaults import MEMBER_EPOCHS, STRATEGIES, SUPERNET_EPOCHS
from nas._io import file_digest, write_json
from nas.interrupt import graceful_stop
from nas.progress import StudyProgress
from nas.errors import ConfigError, StudyError, unknown_name
from nas.hardware import load_profile, open_target
from nas.hardware.cache import MeasurementCache
from nas.hardware.onnxruntime_cpu import available_threads
from nas.hardware.predictor import LatencyPredictor
from nas.search.constraints import result_constraints
from nas.search.objectives import resolve_objectives
from nas.search.study import (
    ENVIRONMENT_ATTR, GRACE_PERIOD_S, RUN_ATTR, StudySettings, budget_state, count_trials, create_or_resume,
    default_study_name, fail_orphans, load_existing, make_sampler, open_storage, storage_url,
)
from nas.search.fidelity import CONTINUES_ATTR, STOPPED_ATTR, Fidelity, enqueue_continuations, parse_fidelity
from nas.search.oneshot import OneShot, one_shot_space, strategy_settings
from nas.search.warm_start import enqueue_front, load_warm_start
from nas.search.trial import (
    CHECKPOINT, Infeasible, StoppedEarly, TrialContext, draw_candidate, record_failure, run_trial,
)
from nas.spaces import (
    Distribution, SearchSpace, baseline_params, check_start_point, for_data, for_precisions, load_space,
)
from nas.tasks import get_task
from nas.train.teacher import best_in_study, teacher_from_path

log = logging.getLogger("nas")
CACHE_DIR = ".cache"
"""Under the results root, shared by its studies: decoded images and latency records."""


PER_PROCESS = {"per_process": True}
"""Field metadata: a setting of one process (where it writes, how it reports), not of the study it runs."""


@dataclass
class SearchConfig:
    task: str = "xray"
    hardware: str = "cpu"
    space: str | None = None
    study: str | None = field(default=None, metadata=PER_PROCESS)
    results: Path = field(default=Path("results"), metadata=PER_PROCESS)
    storage: str | None = field(default=None, metadata=PER_PROCESS)
    trials: int = 20
    """The study's total of spent trials (baselines included); a worker's own cap is `max_new_trials`."""
    timeout: float | None = field(default=None, metadata=PER_PROCESS)
    epochs: int | None = None
    objectives: tuple[str, ...] | None = None
    """Default: the task's (auc, latency_p95 for xray; cpm, latency_p95 for nodule)."""
    sampler: str = "nsga2"
    population: int = 10
    seed: int = 0
    max_latency_ms: float | None = None
    min_sensitivity: float | None = None
    target_sensitivity: float = 0.95
    data: str | None = None
    positive_class: str | None = None
    baselines: bool = field(default=True, metadata=PER_PROCESS)
    start_points: bool = field(default=True, metadata=PER_PROCESS)
    """Enqueue the space's `start_points` (known-good candidates) when the study is created."""
    trial_timeout: float | None = None
    keep_artifacts: Literal["front", "all"] = "front"
    progress: bool = field(default=True, metadata=PER_PROCESS)
    grace_period: float = field(default=GRACE_PERIOD_S, metadata=PER_PROCESS)
    """Seconds without a heartbeat after which a running trial is taken for dead, failed and retried once."""
    worker: int | None = field(default=None, metadata=PER_PROCESS)
    """Set in a worker process: it joins a running study, so it never takes RUNNING trials for orphans."""
    max_new_trials: int | None = field(default=None, metadata=PER_PROCESS)
    threads: int | None = field(default=None, metadata=PER_PROCESS)
    """Training threads (default: every core this process may use); local workers split the cores."""
    teacher: str | None = None
    """Checkpoint folder distillation learns from; default: the study's best validation-AUC model so far."""
    device_url: str | None = None
    """A `nas agent` on the target device: every latency is measured there, over HTTP."""
    device_token_file: str | None = None
    device_ca_file: str | None = None
    allow_estimate: bool = False
    """Without a reachable device, use the profile's calibrated estimate (labelled `estimated` everywhere)."""
    any_device: bool = False
    """Measure on the agent even when its device does not match the profile (the records say what it was)."""
    train_device: str = "auto"
    """Where candidates train: cpu, cuda, or auto (cuda when PyTorch sees a GPU). Latency is measured apart."""
    rungs: str | None = None
    """Multi-fidelity rungs in epochs ("1,3,9"), overriding the space's `fidelity`; "none" trains every trial fully."""
    reduction_factor: int | None = None
    brackets: int | None = None
    promote_after: int | None = None
    """Results a rung needs before it promotes any trial (default: the reduction factor; 1: the first to arrive)."""
    warm_start: str | None = None
    """An earlier study (same task and profile) whose front is enqueued first and whose trained models
    compression-only variants start from."""
    strategy: str = "trials"
    """trials: every candidate trains; one-shot: candidates inherit the weights of one supernet per study."""
    supernet_epochs: int = SUPERNET_EPOCHS
    member_epochs: int = MEMBER_EPOCHS
    """One-shot: epochs each front member is fine-tuned as a standalone model (capped by `epochs`)."""
    latency_predictor: str | None = None
    """A predictor fitted by `nas calibrate --measure` on this profile: candidates it puts far over the latency
    budget are not timed (nas.search.trial.skip_by_prediction)."""


def run_fields() -> tuple[str, ...]:
    """What a worker needs to run the study's trials as its creator would: every setting not per process."""
    return tuple(f.name for f in fields(SearchConfig) if not f.metadata.get("per_process"))


@dataclass
class SearchRun:
    """What a search produced: the study and its folders, for the final report."""

    study: optuna.Study
    context: TrialContext
    settings: StudySettings
    created: bool
    interrupted: bool = False
    new_trials: list[int] = field(default_factory=list)


def prepare(config: SearchConfig) -> SearchRun:
    """Validate every input and open (or resume) the study, before any training is spent."""
    if not 0 < config.target_sensitivity <= 1:
        raise ConfigError(f"--target-sensitivity must be in (0, 1], got {config.target_sensitivity}")
    if config.min_sensitivity is not None and not 0 < config.min_sensitivity <= 1:
        raise ConfigError(f"--min-sensitivity must be in (0, 1], got {config.min_sensitivity}")
    if config.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {config.trials}")
    if config.epochs is not None and config.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {config.epochs}")
    if config.max_latency_ms is not None and not config.max_latency_ms > 0:
        raise ConfigError(f"--max-latency-ms must be above 0, got {config.max_latency_ms:g}")
    task = get_task(config.task)
    space = load_space(config.space or task.default_space)
    if space.task != task.name:
        raise ConfigError(f"{space.path}: search space {space.name!r} is for task {space.task!r}, not {task.name!r}")
    profile = load_profile(config.hardware)
    target = open_target(profile, device_url=config.device_url, token_file=config.device_token_file,
                         ca_file=config.device_ca_file, allow_estimate=config.allow_estimate,
                         any_device=config.any_device)
    if config.strategy not in STRATEGIES:
        raise ConfigError(unknown_name("strategy", config.strategy, STRATEGIES))
    one_shot = config.strategy == "one-shot"
    if one_shot:
        rungs = config.rungs is not None and parse_fidelity(config.rungs, None, None, None, "--rungs") is not None
        if rungs or rung_flags_given(config):  # `--rungs none` (full training) is fine
            raise ConfigError("--rungs, --reduction-factor, --brackets and --promote-after train candidates at "
                              "several fidelities; "
                              "a --strategy one-shot search trains none (they inherit the supernet's weights): "
                              "leave them out, or use --strategy trials")
        space = one_shot_space(space)
    fidelity = None if one_shot else study_fidelity(config, space)
    fixed_teacher = teacher_from_path(config.teacher) if config.teacher else None
    budget = config.max_latency_ms if config.max_latency_ms is not None else task.latency_budget_ms(profile)
    objectives = resolve_objectives(config.objectives or task.default_objectives)
    dataset = task.load_data(config.data, positive_class=config.positive_class)
    dataset.decoded_cache = Path(config.results) / CACHE_DIR / "decoded"
    space = for_data(for_precisions(space, list(target.precisions), profile.name), dataset.image_size)
    start_points = [] if one_shot else space.start_points  # one-shot draws subnets of its supernet, not these
    for point in start_points:
        check_start_point(space, point, lambda trial: draw_candidate(
            task, space, trial, in_channels=dataset.in_channels, fidelity=fidelity, max_epochs=config.epochs))
    name = config.study or default_study_name(task.name, profile.name)
    results_dir = Path(config.results) / name
    settings = StudySettings(
        task=task.name, space=space.name, space_digest=file_digest(space.path),  # type: ignore[arg-type]
        hardware=profile.name, hardware_digest=file_digest(profile.path),  # type: ignore[arg-type]
        objectives=[o.name for o in objectives], directions=[o.direction for o in objectives],
        max_latency_ms=budget, min_sensitivity=config.min_sensitivity,
        target_sensitivity=config.target_sensitivity, data=str(dataset.path),
        data_fingerprint=dataset.fingerprint, seed=config.seed, epochs=config.epochs,
        latency_method={"local": "measured", "remote": "remote", "estimate": "estimated"}[target.how],
        fidelity=fidelity.model_dump(exclude_none=True) if fidelity else None,  # as stored before promote_after
        strategy=strategy_settings(config.strategy, config.supernet_epochs),
    )
    storage = open_storage(storage_url(config.storage, Path(config.results), name), grace_period=config.grace_period)
    # Seeded by the history's length and the worker, so a resumed or parallel process does not replay the draws.
    seed = config.seed + count_trials(storage, name) + 7919 * (config.worker or 0)
    sampler = make_sampler(config.sampler, seed=seed, population=config.population)
    study, created = create_or_resume(name, storage, settings, sampler)
    if config.worker is None:
        study.set_user_attr(RUN_ATTR, {k: getattr(config, k) for k in run_fields()} | portable_refs(config))
        if config.storage is None:  # the default local SQLite file has one owner: running trials are orphans
            orphans = fail_orphans(study)
            if orphans:
                log.warning("trial(s) %s were left running by a process that is gone: failed, retried once", orphans)
    if created and config.baselines:
        for baseline in space.baselines:
            study.enqueue_trial(baseline_params(space, baseline), user_attrs={"baseline": baseline.name})
    if created and config.start_points:
        for point in start_points:
            study.enqueue_trial(point.params, user_attrs={"start_point": point.name})
    warm = load_warm_start(Path(config.results), config.warm_start, settings, config.storage) \
        if config.warm_start else None
    if created and warm is not None:
        enqueue_front(study, warm)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(results_dir / "settings.json", settings.model_dump())
    write_json(results_dir / "run.json", study.user_attrs.get(RUN_ATTR, {}))
    write_json(results_dir / "environment.json", study.user_attrs.get(ENVIRONMENT_ATTR, {}))
    context = TrialContext(
        task=task, space=space, target=target, dataset=dataset, results_dir=results_dir, seed=config.seed,
        target_sensitivity=config.target_sensitivity, constraints=settings.constraints,
        max_epochs=config.epochs, trial_timeout=config.trial_timeout,
        train_device=resolve_train_device(config.train_device),
        teacher=(lambda: fixed_teacher) if fixed_teacher else (lambda: best_in_study(study, results_dir / "trials")),
        fidelity=fidelity, objectives=objectives,
        measurements=MeasurementCache(Path(config.results) / CACHE_DIR / "measurements"), warm=warm,
        one_shot=OneShot.for_study(space, in_channels=dataset.in_channels, results_dir=results_dir,
                                   supernet_epochs=config.supernet_epochs, member_epochs=config.member_epochs,
                                   seed=config.seed) if one_shot else None,
        predictor=load_predictor(config.latency_predictor, target.profile.name) if config.latency_predictor else None,
    )
    return SearchRun(study=study, context=context, settings=settings, created=created)


def rung_flags_given(config: SearchConfig) -> bool:
    """--reduction-factor, --brackets or --promote-after given (a 0 counts: it is refused, not ignored)."""
    return any(v is not None for v in (config.reduction_factor, config.brackets, config.promote_after))


def study_fidelity(config: SearchConfig, space: SearchSpace) -> Fidelity | None:
    """Rungs from the flags or the space, within the epoch budget (--epochs, else the space's most).

    Rungs given as flags must fit the budget; the space's rungs are capped by --epochs (a quick run), and a
    single rung left means plain full training."""
    flags = bool(config.rungs) or rung_flags_given(config)
    where = "--rungs" if flags else f"{space.path}: fidelity"
    fidelity = parse_fidelity(config.rungs, config.reduction_factor, config.brackets, space.fidelity, where,
                              config.promote_after)
    if fidelity is None:
        return None
    epochs = space.training.get("epochs")
    most = int(epochs.high if isinstance(epochs, Distribution) and epochs.high is not None
               else max(epochs.choices) if isinstance(epochs, Distribution) else epochs)  # type: ignore[arg-type]
    if config.rungs is None and config.epochs is not None and config.epochs < fidelity.epochs:
        rungs = sorted({r for r in fidelity.rungs if r < config.epochs} | {config.epochs})
        if len(rungs) == 1:
            return None
        fidelity = fidelity.model_copy(update={"rungs": rungs, "brackets": min(fidelity.brackets, len(rungs))})
    return fidelity.within(config.epochs or most, where)


def load_predictor(path: str, profile: str) -> LatencyPredictor:
    """The device-fitted predictor at `path`, refused when it was fitted on another profile."""
    predictor = LatencyPredictor.load(Path(path))
    if predictor.provenance.hardware != profile:
        raise ConfigError(f"--latency-predictor {path} was fitted on profile {predictor.provenance.hardware!r}, this "
                          f"search measures on {profile!r}; fit one here with `nas calibrate --hardware {profile} "
                          "--measure 40 --holdout 20`")
    return predictor


def resolve_train_device(choice: str) -> str:
    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--train-device must be auto, cpu or cuda, got {choice!r}")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--train-device cuda: PyTorch sees no CUDA device here; use cpu (or auto)")
    return choice


def portable_refs(config: SearchConfig) -> dict[str, str | None]:
    """Names stay names (each machine resolves them, and the study checks the content digest); paths become
    absolute, for workers started in another folder (or on a shared filesystem)."""
    def ref(value: str | None) -> str | None:
        return str(Path(value).resolve()) if value and Path(value).exists() else value

    return {"space": ref(config.space), "hardware": ref(config.hardware), "data": ref(config.data),
            "teacher": ref(config.teacher), "device_token_file": ref(config.device_token_file),
            "device_ca_file": ref(config.device_ca_file)}


def config_from_study(study: str, storage: str, *, results: Path, worker: int, **overrides: object) -> SearchConfig:
    """A worker's configuration, read from the study it joins (so it needs only --study and --storage)."""
    existing = load_existing(study, open_storage(storage))
    run = existing.user_attrs.get(RUN_ATTR)
    if run is None:
        raise StudyError(f"study {study!r} was not created by `nas search`; start it with nas search first")
    run = {**run, "objectives": tuple(run["objectives"]) if run.get("objectives") else None,
           **{k: v for k, v in overrides.items() if v is not None}}  # a worker's own flags (--data ...) win
    return SearchConfig(**run, study=study, storage=storage, results=results, worker=worker,
                        baselines=False)  # type: ignore[arg-type]


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the running trial's heartbeat, so other processes can fail it if this one is killed."""
    storage = study._storage
    interval = heartbeat_interval(study)
    if interval is None:  # the journal storage has no heartbeats
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
            stop.wait(interval)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_search(config: SearchConfig, run: SearchRun | None = None) -> SearchRun:
    """Run trials until the study holds `config.trials` spent trials, or this process's own cap or timeout.

    Several processes may run this on one study: each counts what is spent and what the others are running,
    waits while running trials could still fill the budget, and a trial asked beyond the budget is given back.
    """
    run = run or prepare(config)
    study, ctx = run.study, run.context
    objectives = ctx.objectives
    torch.set_num_threads(config.threads or available_threads())
    started = time.monotonic()
    done, _ = budget_state(study)
    bar = StudyProgress(total=config.trials, done=done, desc=study.study_name, terminal=config.progress,
                        stop_at=started + config.timeout if config.timeout is not None else None)
    task = ctx.task
    primary, primary_label = task.primary_metric, task.label(task.primary_metric)
    best = _best(study, primary, objectives)
    try:
        with graceful_stop(), bar:
            if ctx.one_shot is not None:  # trained once per study, before any trial; found finished if it was
                try:
                    ctx.one_shot.ready(ctx, lambda message: tqdm.write(message, file=sys.stderr))
                except KeyboardInterrupt:
                    run.interrupted = True
                    return run
            queue_continuations(run)  # a resumed study may hold stopped trials its last results promoted
            while True:
                if interrupt.STOP.is_set():
                    run.interrupted = True
                    break
                if config.timeout is not None and time.monotonic() - started > config.timeout:
                    tqdm.write(f"timeout: {config.timeout:.0f} s passed, no new trial started", file=sys.stderr)
                    break
                if config.max_new_trials is not None and len(run.new_trials) >= config.max_new_trials:
                    break
                fail_stale_trials(study)
                done, running = budget_state(study)
                if done >= config.trials:
                    break
                if done + running >= config.trials:  # others' trials may fill it; if one dies it is retried
                    time.sleep(_poll_seconds(study))
                    continue
                with warnings.catch_warnings():  # heartbeats are wired by hand below (settled point 17)
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                done, running_before = budget_state(study, before=trial.number)
                if done + running_before >= config.trials:  # another process took the last slot first
                    trial.set_user_attr("failure", "not run: the study's budget was reached by other processes")
                    trial.set_user_attr("failure_kind", "surplus")
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                run.new_trials.append(trial.number)
                label = trial_label(trial.user_attrs)
                bar.start_trial(f"trial {trial.number} {label}".strip(), f"best {primary_label} {best:.4f}" if best else "")
                try:
                    with heartbeat(study, trial):
                        result = run_trial(ctx, trial)
                except StoppedEarly as exc:
                    reason = record_failure(ctx, trial.number, exc, "stopped")
                    trial.set_user_attr(STOPPED_ATTR, {"epochs": exc.epochs, "reason": reason})
                    study.tell(trial, state=TrialState.PRUNED)
                    tqdm.write(f"trial {trial.number}: stopped after {exc.epochs} epoch(s): {reason}", file=sys.stderr)
                except Infeasible as exc:
                    reason = record_failure(ctx, trial.number, exc, "infeasible")
                    trial.set_user_attr("infeasible", reason)
                    study.tell(trial, state=TrialState.PRUNED)
                    tqdm.write(f"trial {trial.number}: infeasible, not trained: {reason}", file=sys.stderr)
                except KeyboardInterrupt as exc:
                    reason = record_failure(ctx, trial.number, exc, "interrupted")
                    trial.set_user_attr("failure", f"interrupted ({reason or 'Ctrl-C'})")
                    trial.set_user_attr("failure_kind", "interrupted")
                    study.tell(trial, state=TrialState.FAIL)
                    run.interrupted = True
                    break
                except Exception as exc:  # any trial failure is recorded and the study goes on
                    reason = record_failure(ctx, trial.number, exc, "error")
                    trial.set_user_attr("failure", reason)
                    trial.set_user_attr("failure_kind", "error")
                    study.tell(trial, state=TrialState.FAIL)
                    tqdm.write(f"trial {trial.number}: failed: {reason}", file=sys.stderr)
                else:
                    values = [o.value(result) for o in objectives]
                    trial.set_user_attr("result", result.model_dump(mode="json"))
                    for key, value in result_constraints(run.settings.constraints, result).items():
                        trial.set_constraint(key, value)
                    study.tell(trial, values)
                    val = result.metrics["val"]
                    best = max(best or 0.0, float(val[primary]))  # type: ignore[arg-type]
                    tqdm.write(f"trial {trial.number}: {task.describe_metrics(val)}, "
                               f"{task.describe_latency(result.measurement)}, train "
                               f"{result.seconds.get('train', 0):.0f} s  "
                               f"{task.summary(task.candidate_of(result.spec, result.pipeline))}", file=sys.stderr)
                queue_continuations(run)
                done, _ = budget_state(study)
                bar.end_trial(done, f"best {primary_label} {best:.4f}" if best else "")
    finally:
        bar.close()
    return run


def trial_label(attrs: dict[str, Any]) -> str:
    """What an enqueued trial is, for the progress line: a baseline, a start point, a continuation."""
    if "baseline" in attrs:
        return attrs["baseline"]
    if "start_point" in attrs:
        return f"(start point {attrs['start_point']})"
    if CONTINUES_ATTR in attrs:
        return f"(continues trial {attrs[CONTINUES_ATTR]['trial']} from epoch {attrs[CONTINUES_ATTR]['epochs']})"
    return ""


def queue_continuations(run: SearchRun) -> None:
    """Multi-fidelity: a continuation for every stopped trial that now ranks among the top of its rung."""
    ctx = run.context
    if ctx.fidelity is None:
        return
    directions = [o.direction for o in ctx.objectives]
    for number in enqueue_continuations(run.study, ctx.fidelity, directions,
                                        lambda n: (ctx.trial_dir(n) / CHECKPOINT).exists()):
        tqdm.write(f"trial {number}: now ranks among the top of its rung: a continuation is queued", file=sys.stderr)


def heartbeat_interval(study: optuna.Study) -> float | None:
    """Seconds between heartbeats, or None when the storage keeps none (the study wraps its storage in a cache,
    which forwards the heartbeat calls, so ask the wrapper rather than test its type)."""
    get = getattr(study._storage, "get_heartbeat_interval", None)
    return get() if get is not None else None


def _poll_seconds(study: optuna.Study) -> float:
    return float(heartbeat_interval(study) or 5)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail trials whose process died (no heartbeat within the grace period); ask/tell wires this by hand."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)




def _best(study: optuna.Study, name: str, objectives: list) -> float | None:
    names = [o.name for o in objectives]
    if name not in names:
        return None
    values = [t.values[names.index(name)] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(values) if values else None
