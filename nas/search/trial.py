"""The one path every trial takes (ARCHITECTURE.md): phase 1 measures shapes, phase 2 trains and scores."""

from __future__ import annotations

import dataclasses
import io
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch

from nas import interrupt, progress
from nas._io import atomic_write_bytes, write_json
from nas.compress import build_model, load_model, plan_channels, prune_to_channels, quantize_int8
from nas.compress.quantize import CALIBRATION_IMAGES
from nas.data import Dataset
from nas.errors import TrialError
from nas.export import Predictor, check_parity, half_precision_predictor, to_onnx, torch_predictor
from nas.hardware import HardwareProfile, Measurement, Target
from nas.hardware.cache import MeasurementCache
from nas.hardware.deploy import scored_artifact
from nas.hardware.runtime_choice import RuntimeChoice, int8_artifact, measure_runtimes, measure_with
from nas.models import create_model
from nas.models.complexity import count_macs, count_params
from nas.search.constraints import Constraints, budget_basis, budget_latency_ms, constraint_values
from nas.search.fidelity import BRACKET_ATTR, CONTINUES_ATTR, RUNGS_ATTR, Fidelity, promotion, rung_competitors
from nas.search.objectives import Objective
from nas.search.result import TrialResult
from nas.search.warm_start import TRAINED_WEIGHTS, WarmStart
from nas.spaces import SearchSpace
from nas.spec import Precision, Spec
from nas.tasks import Candidate, Stage, Task, target_at_batch
from nas.train import Distillation
from nas.train.teacher import Teacher, teacher_logits

if TYPE_CHECKING:
    from nas.hardware.predictor import LatencyPredictor
    from nas.search.oneshot import OneShot

PREDICTED_SKIP_FACTOR = 3.0
"""A candidate predicted at over this many times the latency budget is not timed (`skip_by_prediction`)."""
DEPLOYED_ONNX = "model.onnx"
"""What ships, is measured and is scored: the INT8 model for an int8 candidate."""
FLOAT_ONNX = "model.fp32.onnx"
"""An int8 candidate's float export, kept so the cost of quantization stays visible."""
FINETUNE_LR_SCALE = 0.1
INHERITED_FLAG = ("weights inherited from the study's supernet (BatchNorm recalibrated), not trained: its "
                  "validation figures are a search-time estimate")
CHECKPOINT = "checkpoint.pt"
"""Weights and training state at the last rung reached, from which a promoted, resumed or continued trial goes on."""


class Infeasible(Exception):
    """The candidate breaks a hardware budget; it is stopped before any training is spent."""


class StoppedEarly(Exception):
    """Multi-fidelity: the candidate did not rank high enough at a rung to earn more training (yet)."""

    def __init__(self, reason: str, epochs: int) -> None:
        super().__init__(reason)
        self.epochs = epochs


@dataclass
class TrialContext:
    """Everything a trial needs, built once per search."""

    task: Task
    space: SearchSpace
    target: Target
    dataset: Dataset
    results_dir: Path
    seed: int
    target_sensitivity: float
    constraints: Constraints
    max_epochs: int | None
    trial_timeout: float | None
    train_device: str = "cpu"
    teacher: Callable[[], Teacher | None] = field(default=lambda: None)
    """The model distillation learns from, looked up when a trial needs one (the study's best so far)."""
    fidelity: Fidelity | None = None
    """Successive-halving rungs; None trains every candidate fully."""
    objectives: list[Objective] = field(default_factory=list)
    measurements: MeasurementCache | None = None
    """Phase-1 latencies reused for shapes already timed on this machine (the front is always re-measured)."""
    warm: WarmStart | None = None
    """An earlier study's trained models, which compression-only variants start from."""
    one_shot: OneShot | None = None
    """`--strategy one-shot`: candidates inherit the study's supernet weights instead of training."""
    predictor: LatencyPredictor | None = None
    """`--latency-predictor`: candidates it puts far over the latency budget are not timed (`skip_by_prediction`)."""

    @property
    def profile(self) -> HardwareProfile:
        return self.target.profile

    def measure(self, onnx_path: Path, precision: Precision, input_shape: tuple[int, ...],
                module: torch.nn.Module | None, origin: str) -> Measurement:
        if self.measurements is None:
            return self.target.measure(onnx_path, precision, input_shape, module)
        return self.measurements.measure(self.target, onnx_path, precision, input_shape, module, origin=origin)

    def trial_dir(self, number: int) -> Path:
        return self.results_dir / "trials" / str(number)


def draw_candidate(task: Task, space: SearchSpace, trial: optuna.Trial, *, in_channels: int,
                   fidelity: Fidelity | None, max_epochs: int | None) -> Candidate:
    """A trial's candidate as the search trains it: with rungs, to the top rung, its epochs knob not drawn."""
    return task.sample_candidate(space, trial, in_channels=in_channels,
                                 max_epochs=fidelity.epochs if fidelity else max_epochs,
                                 epochs=fidelity.epochs if fidelity else None)


def run_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialResult:
    """One candidate, every task: its stages measured before any training (phase 1), then trained, compressed,
    exported, verified and scored (phase 2). The task says what the stages are, how their measurements compose
    into the candidate's latency, and what scoring the whole candidate adds."""
    seconds: dict[str, float] = {}
    deadline = time.monotonic() + ctx.trial_timeout if ctx.trial_timeout else None
    task, fidelity = ctx.task, ctx.fidelity
    candidate = draw_candidate(task, ctx.space, trial, in_channels=ctx.dataset.in_channels, fidelity=fidelity,
                               max_epochs=ctx.max_epochs)
    out = ctx.trial_dir(trial.number)
    for stage in candidate.stages:
        candidate.folder(out, stage).mkdir(parents=True, exist_ok=True)
    if fidelity is not None and not task.supports_rungs:
        raise TrialError(f"multi-fidelity rungs are not supported by the {task.name} task yet; run it with "
                         "--rungs none")
    quant = candidate.main.spec.compression.quant
    if quant not in ctx.target.precisions:
        raise TrialError(f"precision {quant} cannot be measured on profile {ctx.profile.name!r} "
                         f"here (precisions: {', '.join(ctx.target.precisions)})")

    # Phase 1: latency depends only on shapes, so the deployed shapes are measured on untrained models first.
    progress.phase("measuring")
    started = time.monotonic()
    torch.manual_seed(ctx.seed + trial.number)  # initial weights are part of what --seed fixes
    models = {stage.name: create_model(stage.spec) for stage in candidate.stages}
    candidate = plan_pruning(ctx, candidate, models)
    task.write_candidate(candidate, out)
    spec = candidate.main.spec
    trial.set_user_attr("spec", candidate.record or spec.model_dump(mode="json"))
    shapes = {stage.name: build_model(stage.spec) if stage.compressed else models[stage.name]
              for stage in candidate.stages}
    params = sum(count_params(shapes[stage.name]) for stage in candidate.stages)
    stage_macs = {stage.name: count_macs(shapes[stage.name], stage.spec.input_shape) for stage in candidate.stages}
    if spec.baseline is None:
        skip_by_prediction(ctx, trial, candidate, shapes, out)
    choices = {stage.name: measure_precisions(ctx, shapes[stage.name], stage, candidate.folder(out, stage))
               for stage in candidate.stages}
    runtime_choice = choices[candidate.main.name]
    by_precision = runtime_choice.by_precision
    measured = {name: choice.by_precision[s.spec.compression.quant]
                for (name, choice), s in zip(choices.items(), candidate.stages)}
    measurement, scan = task.compose_latency(candidate, ctx.dataset, measured)
    flags = speed_flags(ctx, by_precision)
    seconds["measure"] = time.monotonic() - started
    write_json(out / "measurement.json", measurement.model_dump())
    trial.set_user_attr("measurement", measurement.model_dump())
    if spec.baseline is None:  # baselines are the yardstick: always trained, even when over budget
        check_budgets(ctx, measurement, task.budget_what(candidate))
    interrupt.check()

    # Phase 2: train each stage (distilling if asked), prune to the planned counts and fine-tune, export,
    # quantize, and score the deployed artifacts on the validation split.
    started = time.monotonic()
    progress.phase("training")
    distill, teacher = distillation(ctx, spec, flags)
    seed = ctx.seed + trial.number
    partial = TrialResult(trial=trial.number, spec=spec, params=params, macs=stage_macs[candidate.main.name],
                          measurement=measurement, metrics={})
    if len(candidate.stages) == 1:  # one model: warm start and multi-fidelity rungs apply
        train_log: dict[str, object] = train_candidate(ctx, trial, models[candidate.main.name], partial, flags,
                                                       seed=seed, deadline=deadline, distill=distill)
    else:  # in order: each stage learns with the ones before it trained (a cascade)
        train_log = {}
        for n, stage in enumerate(candidate.stages):
            progress.phase("training", stage.name, n + 1, len(candidate.stages))
            upstream = {s.name: (s.spec, models[s.name]) for s in candidate.stages[:n]}
            train_log[stage.name] = train_stage(ctx, stage, models[stage.name], seed=seed, deadline=deadline,
                                                distill=distill if stage.compressed else None, upstream=upstream)
    train_log["device"] = ctx.train_device
    for stage in candidate.stages:
        if stage.compressed and stage.spec.compression.channels:
            train_log |= prune_and_finetune(ctx, stage, models[stage.name], candidate.folder(out, stage), seed=seed,
                                            deadline=deadline, distill=distill)
    seconds["train"] = time.monotonic() - started
    interrupt.check()
    progress.phase("scoring")
    started = time.monotonic()
    artifacts: dict[str, Path | Predictor] = {}
    for stage in candidate.stages:
        artifacts[stage.name] = export_stage(ctx, stage, models[stage.name], candidate.folder(out, stage),
                                             choices[stage.name])
    val, float_val = score_on_val(ctx, spec, candidate.folder(out, candidate.main), artifacts[candidate.main.name])
    scored = task.score_candidate(candidate, artifacts, ctx.dataset, "val")
    macs = stage_macs[candidate.main.name]
    if scored is not None:
        val |= scored.metrics
        measurement, scan = task.compose_latency(candidate, ctx.dataset, measured, scored.runs)
        flags += scored.flags
    if scan is not None:  # a multi-stage candidate's MACs: each stage's, times the inputs it runs per case
        macs = round(sum(scan.stages[s.name].runs * (s.batch or 1) * stage_macs[s.name] for s in candidate.stages))
    seconds["evaluate"] = time.monotonic() - started
    result = TrialResult(trial=trial.number, spec=spec, params=params, macs=macs, measurement=measurement,
                         metrics={"val": val}, float_metrics={"val": float_val}, latency_by_precision=by_precision,
                         teacher=teacher, flags=flags, train_log=train_log, seconds=seconds,
                         runtime_choice=runtime_choice, pipeline=candidate.record, scan_latency=scan,
                         latency_by_stage=measured if len(candidate.stages) > 1 else {})
    if fidelity is not None and spec.baseline is None:
        record_rung(ctx, trial, spec.training.epochs, result)
        (out / CHECKPOINT).unlink(missing_ok=True)
    write_json(out / "result.json", result.model_dump(mode="json"))
    return result


def score_on_val(ctx: TrialContext, spec: Spec, folder: Path, deployed: Path | Predictor
                 ) -> tuple[dict[str, object], dict[str, float]]:
    """The deployed artifact's validation metrics, and the float model's beside them (the cost of quantization)."""
    float_onnx = folder / (FLOAT_ONNX if spec.compression.quant == "int8" else DEPLOYED_ONNX)
    float_val = ctx.task.evaluate(float_onnx, spec, ctx.dataset, "val", threshold=None,
                                  target_sensitivity=ctx.target_sensitivity)
    val: dict[str, object] = dict(float_val)
    if spec.compression.quant != "fp32":
        val = dict(ctx.task.evaluate(deployed, spec, ctx.dataset, "val", threshold=None,
                                     target_sensitivity=ctx.target_sensitivity))
    return val, float_val


def plan_pruning(ctx: TrialContext, candidate: Candidate, models: dict[str, torch.nn.Module]) -> Candidate:
    """Each compressed stage's pruned channel counts, fixed from its untrained shapes (settled point 1)."""
    for stage in candidate.stages:
        c = stage.spec.compression
        if stage.compressed and c.prune_ratio:
            channels = plan_channels(models[stage.name], stage.spec, c.prune_ratio, ctx.profile.channel_multiple)
            candidate = ctx.task.with_stage_spec(candidate, stage.name, stage.spec.model_copy(
                update={"compression": c.model_copy(update={"channels": channels})}))
    return candidate


def train_stage(ctx: TrialContext, stage: Stage, model: torch.nn.Module, *, seed: int, deadline: float | None,
                distill: Distillation | None, upstream: dict[str, tuple[Spec, torch.nn.Module]]) -> dict[str, object]:
    """One stage of a multi-stage candidate, trained in one go, after the `upstream` stages."""
    log = ctx.task.train(model, stage.spec, ctx.dataset, seed=seed, deadline=deadline, distill=distill,
                         device=ctx.train_device, upstream=upstream)
    log.pop("state", None)
    return log


def prune_and_finetune(ctx: TrialContext, stage: Stage, model: torch.nn.Module, folder: Path, *, seed: int,
                       deadline: float | None, distill: Distillation | None) -> dict[str, object]:
    """Prune a trained stage to its planned counts (by trained-weight importance) and fine-tune it."""
    spec, c = stage.spec, stage.spec.compression
    save_weights(model, folder / TRAINED_WEIGHTS)  # what a compression-only variant can start from
    prune_to_channels(model, spec, c.channels)
    epochs = min(c.finetune_epochs, ctx.max_epochs or c.finetune_epochs)
    if not epochs:
        return {}
    progress.phase("fine-tuning")
    recipe = spec.training.model_copy(update={"epochs": epochs, "lr": spec.training.lr * FINETUNE_LR_SCALE})
    finetune = ctx.task.train(model, spec, ctx.dataset, seed=seed + 1, deadline=deadline, recipe=recipe,
                              distill=distill, device=ctx.train_device)
    return {"finetune_epoch_losses": finetune["epoch_losses"]}


def export_stage(ctx: TrialContext, stage: Stage, model: torch.nn.Module, folder: Path,
                 choice: RuntimeChoice | None = None) -> Path | Predictor:
    """A trained stage's weights and ONNX (checked against PyTorch), quantized when it is compressed to int8;
    returns what it ships as: for a compressed stage, as the runtime `choice` names runs it (settled point 19)."""
    spec = stage.spec
    save_weights(model, folder / "model.pt")
    quantized = stage.compressed and spec.compression.quant == "int8"
    float_onnx = to_onnx(model, spec.input_shape, folder / (FLOAT_ONNX if quantized else DEPLOYED_ONNX))
    check_parity(model, float_onnx, ctx.task.sample_inputs(spec, ctx.dataset))
    if not stage.compressed:
        return float_onnx
    calibration = None
    if quantized:
        calibration = ctx.task.sample_inputs(spec, ctx.dataset, CALIBRATION_IMAGES, "train").numpy()
        quantize_int8(float_onnx, folder / DEPLOYED_ONNX, calibration, method=spec.compression.calibration)
    return scored_artifact(choice, deployed_artifact(spec, folder, model), float_onnx, calibration)


def train_candidate(
    ctx: TrialContext, trial: optuna.Trial, model: torch.nn.Module, partial: TrialResult, flags: list[str], *,
    seed: int, deadline: float | None, distill: Distillation | None,
) -> dict[str, object]:
    """Phase 2's training, before compression: in a one-shot search, none (the supernet's weights, BatchNorm
    recalibrated); from an earlier study's trained model when this candidate differs from it only in compression;
    else rung by rung (multi-fidelity), else in one go. Baselines always train fully: they are the yardstick."""
    spec = partial.spec
    if ctx.one_shot is not None and spec.baseline is None:
        trial.set_user_attr("weights", "inherited")
        flags.append(INHERITED_FLAG)
        return ctx.one_shot.inherit(ctx, model, spec)
    trained = ctx.warm.trained_for(spec) if ctx.warm is not None and spec.baseline is None else None
    if trained is not None:
        try:
            model.load_state_dict(torch.load(trained.weights, map_location="cpu", weights_only=True))
        except Exception as exc:  # a damaged file: this candidate fails, the study goes on
            raise TrialError(f"cannot reuse trained weights {trained.weights}: {type(exc).__name__}: {exc}") from None
        flags.append(f"started from the trained model of trial {trained.trial} of study {trained.study!r} "
                     "(differs only in compression): compressed and fine-tuned, not trained from scratch")
        return {"epoch_losses": [], "warm_start": {"study": trained.study, "trial": trained.trial,
                                                   "weights": str(trained.weights)}}
    if ctx.fidelity is not None and spec.baseline is None:
        return train_in_rungs(ctx, trial, model, partial, ctx.fidelity, seed=seed, deadline=deadline,
                              distill=distill)
    log = ctx.task.train(model, spec, ctx.dataset, seed=seed, deadline=deadline, distill=distill,
                         device=ctx.train_device)
    log.pop("state", None)
    return log


def train_in_rungs(
    ctx: TrialContext, trial: optuna.Trial, model: torch.nn.Module, partial: TrialResult, fidelity: Fidelity, *,
    seed: int, deadline: float | None, distill: Distillation | None,
) -> dict[str, object]:
    """Train rung by rung; below the top rung, score the float model on validation, record the rung in the study
    storage, and go on only when promoted, from the checkpoint on disk (never from scratch).

    A retried trial (its process was killed) resumes from the last rung its earlier attempt recorded; a
    continuation (see nas.search.fidelity) from the checkpoint of the trial it continues, already promoted.
    """
    spec, out = partial.spec, ctx.trial_dir(trial.number)
    bracket = int(trial.user_attrs.get(BRACKET_ATTR, fidelity.bracket_of(trial.number)))
    trial.set_user_attr(BRACKET_ATTR, bracket)
    rungs = fidelity.rungs_for(bracket)
    reached = [int(e) for e in trial.user_attrs.get(RUNGS_ATTR, {}) if int(e) in rungs[:-1]]
    continues = trial.user_attrs.get(CONTINUES_ATTR)
    state: dict[str, object] | None = None
    losses: list[float] = []
    start = 0
    if reached:
        start = max(reached)
        source = earlier_attempt_dir(ctx, trial)
        state = load_checkpoint(source / CHECKPOINT, model, start, f"trial {trial.number}'s earlier attempt")
        save_checkpoint(out / CHECKPOINT, model, state)
        decide_promotion(ctx, trial, bracket, start, fidelity)
    elif continues is not None:
        start = int(continues["epochs"])
        source = ctx.trial_dir(int(continues["trial"]))
        state = load_checkpoint(source / CHECKPOINT, model, start, f"trial {continues['trial']}")
        save_checkpoint(out / CHECKPOINT, model, state)
    for epochs in rungs:
        if epochs <= start:
            continue
        if state is not None:  # promoted: continue from what was saved at the last rung
            state = load_checkpoint(out / CHECKPOINT, model, int(state["epoch"]), f"trial {trial.number}")  # type: ignore[call-overload]
        log = ctx.task.train(model, spec, ctx.dataset, seed=seed, deadline=deadline, distill=distill,
                             device=ctx.train_device, stop_after=epochs, resume=state)  # type: ignore[arg-type]
        losses += log["epoch_losses"]  # type: ignore[arg-type]
        state = log.pop("state")  # type: ignore[assignment]
        if epochs == rungs[-1]:
            break
        val = ctx.task.evaluate(torch_predictor(model), spec, ctx.dataset, "val", threshold=None,
                                target_sensitivity=ctx.target_sensitivity)
        record_rung(ctx, trial, epochs, partial.model_copy(update={"metrics": {"val": val}}))
        save_checkpoint(out / CHECKPOINT, model, state)
        interrupt.check()
        decide_promotion(ctx, trial, bracket, epochs, fidelity)
    return {"epoch_losses": losses, "rungs": rungs, "bracket": bracket}


def record_rung(ctx: TrialContext, trial: optuna.Trial, epochs: int, result: TrialResult) -> None:
    """The rung's float validation metrics and objective values, kept on the trial in the study storage."""
    rungs = dict(trial.user_attrs.get(RUNGS_ATTR, {}))
    rungs[str(epochs)] = {"metrics": result.metrics["val"], "objectives": [o.value(result) for o in ctx.objectives]}
    trial.set_user_attr(RUNGS_ATTR, rungs)


def decide_promotion(ctx: TrialContext, trial: optuna.Trial, bracket: int, epochs: int, fidelity: Fidelity) -> None:
    competitors = rung_competitors(trial.study, bracket, epochs)
    numbers = [n for n, _ in competitors]
    promoted, rank, places = promotion([v for _, v in competitors], [o.direction for o in ctx.objectives],
                                       numbers.index(trial.number), fidelity.reduction_factor, fidelity.min_results)
    if not places:
        raise StoppedEarly(f"waits at the {epochs}-epoch rung (bracket {bracket}): {len(competitors)} of the "
                           f"{fidelity.min_results} results it needs before promoting any trial; it is continued "
                           "from its checkpoint if it ranks among the top then", epochs)
    if not promoted:
        raise StoppedEarly(f"ranked {rank} of {len(competitors)} at the {epochs}-epoch rung (bracket {bracket}); "
                           f"only the top {places} continue (reduction factor {fidelity.reduction_factor})", epochs)


def earlier_attempt_dir(ctx: TrialContext, trial: optuna.Trial) -> Path:
    """The folder of the attempt this trial retries (Optuna's stale-trial retry records it)."""
    frozen = trial.study._storage.get_trial(trial._trial_id)
    failed = frozen.system_attrs.get("failed_trial")
    if failed is None:
        raise TrialError(f"trial {trial.number} carries rung records but no earlier attempt to resume from")
    return ctx.trial_dir(int(failed))


def save_checkpoint(path: Path, model: torch.nn.Module, state: dict[str, object] | None) -> None:
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "train_state": state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, model: torch.nn.Module, epochs: int, whose: str) -> dict[str, object]:
    """Weights into `model`; returns the training state. A missing or unreadable checkpoint fails the trial."""
    if not path.exists():
        raise TrialError(f"cannot continue {whose} from the {epochs}-epoch rung: checkpoint {path} is missing")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        state = saved["train_state"]
        if int(state["epoch"]) != epochs:
            raise ValueError(f"it holds epoch {state['epoch']}, not {epochs}")
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise TrialError(f"cannot continue {whose} from the {epochs}-epoch rung: checkpoint {path} is corrupt "
                         f"({type(exc).__name__}: {exc})") from None
    return state


def deployed_artifact(spec: Spec, folder: Path, model: torch.nn.Module | None = None) -> Path | Predictor:
    """What a candidate ships as, for scoring: model.onnx (INT8 for an int8 candidate), or for fp16 the model run
    in half precision, since fp16 runtimes convert the float model themselves."""
    if spec.compression.quant == "fp16":
        return half_precision_predictor(model if model is not None else load_model(spec, folder / "model.pt"))
    return folder / DEPLOYED_ONNX


def measure_precisions(ctx: TrialContext, model: torch.nn.Module, stage: Stage, out: Path) -> RuntimeChoice:
    """Phase 1's one measurement of a stage, at the batch it runs at: the deployed precision, and fp32 beside any
    lower one, on every runtime the profile may deploy with; the choice names the fastest (settled point 19), so a
    quantization or runtime that does not pay is visible. A stage that is not compressed ships as it is, on the
    study's own runtime.

    INT8 scales do not change speed, so phase 1 calibrates on a few training images only (settled point 1).
    """
    spec = stage.spec
    module = model if ctx.target.needs_model else None
    origin = f"{ctx.results_dir.name} trial {out.parent.name} {stage.name}" if stage.folder else \
        f"{ctx.results_dir.name} trial {out.name}"
    target = target_at_batch(ctx.target, stage.batch)
    if not stage.compressed:
        target = dataclasses.replace(target, profile=target.profile.model_copy(update={"runtimes": [target.runtime]}))
    quant = spec.compression.quant
    with tempfile.TemporaryDirectory(prefix="shape-", dir=out) as tmp:
        fp32 = to_onnx(model, spec.input_shape, Path(tmp) / "fp32.onnx")
        calibration = ctx.task.sample_inputs(spec, ctx.dataset, 32, "train").numpy() if quant == "int8" else None
        return measure_runtimes(target, fp32, tuple(dict.fromkeys(("fp32", quant))),  # type: ignore[arg-type]
                                measure_with(ctx.measurements, spec.input_shape, module, origin),
                                int8_artifact(calibration), Path(tmp), allowed=(quant,))


def speed_flags(ctx: TrialContext, by_precision: dict[str, Measurement]) -> list[str]:
    fp32 = by_precision["fp32"]
    return [f"{precision} is no faster than fp32 on {ctx.profile.name}: p50 {m.p50_ms:.3f} ms vs {fp32.p50_ms:.3f} ms"
            for precision, m in by_precision.items() if precision != "fp32" and m.p50_ms >= fp32.p50_ms]


def distillation(ctx: TrialContext, spec: Spec, flags: list[str]) -> tuple[Distillation | None, str | None]:
    if not spec.compression.distill:
        return None, None
    teacher = ctx.teacher()
    if teacher is None:
        flags.append("distillation asked for, but no finished model exists yet to teach: trained on labels only")
        return None, None
    logits = teacher_logits(teacher, ctx.task, ctx.dataset, "train")
    c = spec.compression
    return Distillation(logits, temperature=c.temperature, alpha=c.alpha), teacher.name


def skip_by_prediction(ctx: TrialContext, trial: optuna.Trial, candidate: Candidate,
                       shapes: dict[str, torch.nn.Module], out: Path) -> None:
    """Phase 1 without a timing, for a candidate the device-fitted predictor puts over PREDICTED_SKIP_FACTOR times
    the latency budget: infeasible, its latency recorded as the predictor's estimate (labelled `estimated`). A
    search scoring thousands of subnets saves the seconds each timing costs; everything else is still measured.

    The predictor prices the fp32 graph on the runtime it was fitted on; the factor leaves room for its error and
    for the fastest other runtime or INT8 (at most 2.9x faster than ONNX Runtime fp32 in this repository's
    benchmarks). One-model candidates only: a pipeline's time is composed from several stages' runs."""
    predictor, budget = ctx.predictor, ctx.constraints.max_latency_ms
    if predictor is None or budget is None or len(candidate.stages) != 1:
        return
    stage = candidate.main
    with tempfile.TemporaryDirectory(prefix="predict-", dir=out) as tmp:
        estimate = predictor.estimate(to_onnx(shapes[stage.name], stage.spec.input_shape, Path(tmp) / "fp32.onnx"))
    if estimate.p50_ms <= PREDICTED_SKIP_FACTOR * budget:
        return
    write_json(out / "measurement.json", estimate.model_dump())
    trial.set_user_attr("measurement", estimate.model_dump())
    raise Infeasible(f"predicted p50 {estimate.p50_ms:.3f} ms ({predictor.name}) is over {PREDICTED_SKIP_FACTOR:g}x "
                     f"the {budget:g} ms budget: not measured")


def check_budgets(ctx: TrialContext, m: Measurement, what: str = "latency") -> None:
    """Phase 1's verdict: the study's constraints on the untrained shapes (latency only), and the profile's
    memory budget."""
    latency = budget_latency_ms(m)
    if constraint_values(ctx.constraints, p95_ms=latency, sensitivity=None).get("max_latency_ms", 0) > 0:
        raise Infeasible(f"{budget_basis(m)} {what} {latency:.3f} ms is over the "
                         f"{ctx.constraints.max_latency_ms:g} ms budget")
    memory = ctx.profile.budgets.max_memory_mb
    if memory is not None and m.peak_memory_mb > memory:
        raise Infeasible(f"peak memory {m.peak_memory_mb:.1f} MB is over the {memory} MB budget")


def save_weights(model: torch.nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def record_failure(ctx: TrialContext, number: int, exc: BaseException, kind: str) -> str:
    reason = f"{type(exc).__name__}: {exc}" if kind == "error" else str(exc)
    name = {"infeasible": "infeasible.json", "stopped": "stopped.json"}.get(kind, "failure.json")
    write_json(ctx.trial_dir(number) / name, {"kind": kind, "reason": reason,
                                              "traceback": traceback.format_exc() if kind == "error" else None})
    return reason
