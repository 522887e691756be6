"""The nodule task's trial path: two models per candidate, timed per whole scan, scored by FROC.

Phase 1 (shapes): build both stages (the second pruned to the spec's channel counts), measure each on the target at
the batch it runs at (stage 1: batches of SCREEN_BATCH tiles; stage 2: one candidate patch), and compose one whole
scan's time from the validation scans' measured pre-processing, their tile counts and the candidate cap; over a
per-scan budget the candidate stops here, untrained. Phase 2 (weights): train both stages, prune and fine-tune the
second, export both, quantize the second, score its patches and the pipeline's FROC on validation; the scan time
is then composed with the candidates that really passed the threshold.
"""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from nas._io import write_json
from nas.compress import (
    build_model,
    load_model,
    plan_channels,
    prune_to_channels,
    quantize_int8,
)
from nas.compress.quantize import CALIBRATION_IMAGES
from nas.errors import TrialError
from nas.export import check_parity, to_onnx
from nas.hardware import Measurement, Target
from nas.models import create_model
from nas.models.complexity import count_macs, count_params
from nas.search.front import (
    ARTIFACTS,
    SCHEMA_VERSION,
    completed_results,
    compression_effect,
    feasible,
    prune_artifacts,
)
from nas.search.objectives import Objective, resolve_objectives
from nas.search.pareto import knee, non_dominated
from nas.search.result import ScanLatency, TrialResult
from nas.search.trial import (
    DEPLOYED_ONNX,
    FINETUNE_LR_SCALE,
    FLOAT_ONNX,
    TrialContext,
    check_budgets,
    deployed_artifact,
    measure_precisions,
    save_weights,
    speed_flags,
)
from nas.spec import Spec
from nas.tasks import Task
from nas.tasks.nodule import NoduleTask
from nas.tasks.nodule.data import NoduleData, nodule_data
from nas.tasks.nodule.pipeline import (
    CLASSIFY_DIR,
    DENSE_BATCH,
    PIPELINE_FILE,
    SCREEN_BATCH,
    SCREEN_DIR,
    Evaluation,
    TwoStage,
    compose_latency,
    evaluate_scans,
    load_pipeline,
    probabilities,
    run_dense,
    screen_batches,
)
from nas.tasks.nodule.space import NoduleSpec, sample_nodule_spec

if TYPE_CHECKING:
    from nas.search.runner import SearchRun

__all__ = [
    "is_pipeline",
    "CLASSIFY_DIR",
    "SCREEN_DIR",
    "dense_baseline",
    "load_pipeline",
    "measure_at_batch",
    "run_nodule_trial",
]

SCREEN_UNIT = f"batch of {SCREEN_BATCH} tiles"
CLASSIFY_UNIT = "one candidate patch"


def is_pipeline(task: Task) -> bool:
    """Whether a task's candidates are two-stage pipelines, whose trials and end of search are this module's (the
    one path in trial.py and final.py serves every single-model task)."""
    return isinstance(task, NoduleTask)


def measure_at_batch(target: Target, onnx: Path, precision: str, input_shape: tuple[int, ...], batch: int,
                     model: torch.nn.Module | None = None) -> Measurement:
    """The target's measurement at `batch` (the profile's own batch is for single-image latency)."""
    return _at_batch(target, batch).measure(onnx, precision, input_shape, model)  # type: ignore[arg-type]


def _at_batch(target: Target, batch: int) -> Target:
    return dataclasses.replace(target, profile=target.profile.model_copy(update={"batch": batch}))


def _measure_screen(ctx: TrialContext, model: torch.nn.Module, spec: Spec, folder: Path) -> Measurement:
    """Stage 1 at its batch, through the study's measurement cache when it has one (as stage 2's shapes are)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = to_onnx(model, spec.input_shape, folder / "shape.onnx")
    module = model if ctx.target.needs_model else None
    try:
        if ctx.measurements is None:
            return measure_at_batch(ctx.target, onnx, "fp32", spec.input_shape, SCREEN_BATCH, module)
        target = _at_batch(ctx.target, SCREEN_BATCH)
        return ctx.measurements.measure(target, onnx, "fp32", spec.input_shape, module,
                                        origin=f"{ctx.results_dir.name} trial {folder.parent.name} screen")
    finally:
        onnx.unlink(missing_ok=True)


def _scan_time(data: NoduleData, spec: NoduleSpec, screen: Measurement, classify: Measurement,
               passed: float) -> tuple[Measurement, ScanLatency, float]:
    """Compose one validation scan's time; also returns the mean stage-1 batches per scan."""
    scans = data.froc_scans("val")
    batches = [screen_batches(prepared, spec.screen.input_size)[1] for prepared, _ in scans]
    prep = [data.prepare_ms[prepared.series_uid] for prepared, _ in scans]
    runs = sum(batches) / len(batches)
    measurement, latency = compose_latency(
        prep, {"screen": (screen, runs, SCREEN_UNIT), "classify": (classify, passed, CLASSIFY_UNIT)}, len(scans))
    return measurement, latency, runs


def run_nodule_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialResult:
    seconds: dict[str, float] = {}
    deadline = time.monotonic() + ctx.trial_timeout if ctx.trial_timeout else None
    task, dataset = ctx.task, ctx.dataset
    if not isinstance(task, NoduleTask):
        raise TrialError(f"the nodule trial path needs the nodule task, got {task.name!r}")
    data = nodule_data(dataset, ctx.results_dir.parent)
    spec = sample_nodule_spec(ctx.space, trial, max_epochs=ctx.max_epochs)
    out = ctx.trial_dir(trial.number)
    (out / CLASSIFY_DIR).mkdir(parents=True, exist_ok=True)
    if ctx.fidelity is not None:
        raise TrialError("multi-fidelity rungs are not supported by the nodule task yet; run it with --rungs none")
    quant = spec.classify.compression.quant
    if quant not in ctx.target.precisions:
        raise TrialError(f"precision {quant} cannot be measured on profile {ctx.profile.name!r} here "
                         f"(precisions: {', '.join(ctx.target.precisions)})")

    # Phase 1: both stages' deployed shapes, measured before any training.
    started = time.monotonic()
    torch.manual_seed(ctx.seed + trial.number)
    screen_model = create_model(spec.screen)
    classify_spec = spec.classify
    classify_model = create_model(classify_spec)
    if classify_spec.compression.prune_ratio:
        channels = plan_channels(classify_model, classify_spec, classify_spec.compression.prune_ratio,
                                 ctx.profile.channel_multiple)
        classify_spec = classify_spec.model_copy(
            update={"compression": classify_spec.compression.model_copy(update={"channels": channels})})
        spec = spec.model_copy(update={"classify": classify_spec})
    write_json(out / PIPELINE_FILE, spec.model_dump(mode="json"))
    trial.set_user_attr("spec", spec.model_dump(mode="json"))
    deployed_shapes = build_model(classify_spec)
    by_precision = measure_precisions(ctx, deployed_shapes, classify_spec, out / CLASSIFY_DIR).by_precision
    screen_m = _measure_screen(ctx, screen_model, spec.screen, out / SCREEN_DIR)
    measurement, latency, batches = _scan_time(data, spec, screen_m, by_precision[quant], spec.candidates)
    seconds["measure"] = time.monotonic() - started
    write_json(out / "measurement.json", measurement.model_dump())
    trial.set_user_attr("measurement", measurement.model_dump())
    check_budgets(ctx, measurement, f"per-scan time (with all {spec.candidates} candidates)")

    # Phase 2: train both stages, compress the second, export, score on validation.
    started = time.monotonic()
    seed = ctx.seed + trial.number
    train_log: dict[str, Any] = {"device": ctx.train_device}
    for stage, model, stage_spec in (("screen", screen_model, spec.screen), ("classify", classify_model, classify_spec)):
        train_log[stage] = task.train(model, stage_spec, dataset, seed=seed, deadline=deadline, device=ctx.train_device)
        train_log[stage].pop("state", None)
    compression = classify_spec.compression
    if compression.channels:
        prune_to_channels(classify_model, classify_spec, compression.channels)
        epochs = min(compression.finetune_epochs, ctx.max_epochs or compression.finetune_epochs)
        if epochs:
            recipe = classify_spec.training.model_copy(
                update={"epochs": epochs, "lr": classify_spec.training.lr * FINETUNE_LR_SCALE})
            finetune = task.train(classify_model, classify_spec, dataset, seed=seed + 1, deadline=deadline,
                                  recipe=recipe, device=ctx.train_device)
            train_log["finetune_epoch_losses"] = finetune["epoch_losses"]
    seconds["train"] = time.monotonic() - started

    started = time.monotonic()
    screen_dir, classify_dir = out / SCREEN_DIR, out / CLASSIFY_DIR
    save_weights(screen_model, screen_dir / "model.pt")
    save_weights(classify_model, classify_dir / "model.pt")
    screen_onnx = to_onnx(screen_model, spec.screen.input_shape, screen_dir / DEPLOYED_ONNX)
    check_parity(screen_model, screen_onnx, task.sample_inputs(spec.screen, dataset))
    quantized = quant == "int8"
    float_onnx = to_onnx(classify_model, classify_spec.input_shape,
                         classify_dir / (FLOAT_ONNX if quantized else DEPLOYED_ONNX))
    check_parity(classify_model, float_onnx, task.sample_inputs(classify_spec, dataset))
    target_sensitivity = ctx.target_sensitivity
    float_val = task.evaluate(float_onnx, classify_spec, dataset, "val", threshold=None,
                              target_sensitivity=target_sensitivity)
    val: dict[str, Any] = dict(float_val)
    if quantized:
        calibration = task.sample_inputs(classify_spec, dataset, CALIBRATION_IMAGES, "train").numpy()
        quantize_int8(float_onnx, classify_dir / DEPLOYED_ONNX, calibration, method=compression.calibration)
    artifact = deployed_artifact(classify_spec, classify_dir, classify_model)
    if quant != "fp32":
        val = dict(task.evaluate(artifact, classify_spec, dataset, "val", threshold=None,
                                 target_sensitivity=target_sensitivity))
    evaluation = task.evaluate_pipeline(TwoStage(spec, screen_onnx, artifact), dataset, "val")
    val |= evaluation.froc.metrics()
    measurement, latency, batches = _scan_time(data, spec, screen_m, by_precision[quant], evaluation.mean_passed)
    seconds["evaluate"] = time.monotonic() - started

    macs = round(batches * SCREEN_BATCH * count_macs(screen_model, spec.screen.input_shape)
                 + evaluation.mean_passed * count_macs(deployed_shapes, classify_spec.input_shape))
    flags = speed_flags(ctx, by_precision)
    if data.estimated_val:
        flags.append("validation FROC is estimated (validation patients' nodules against the training scans' false "
                     "positives): it ranks candidates; only the test scans measure detection")
    result = TrialResult(
        trial=trial.number, spec=classify_spec,
        params=count_params(screen_model) + count_params(deployed_shapes), macs=macs, measurement=measurement,
        metrics={"val": val}, float_metrics={"val": float_val}, latency_by_precision=by_precision, flags=flags,
        train_log=train_log, seconds=seconds, pipeline=spec.model_dump(mode="json"), scan_latency=latency,
        latency_by_stage={"screen": screen_m, "classify": by_precision[quant]},
    )
    write_json(out / "result.json", result.model_dump(mode="json"))
    return result


def dense_baseline(target: Target, spec: NoduleSpec, classify_onnx: Path, data: NoduleData,
                   split: str) -> dict[str, Any]:
    """Stage 2 alone over every lung window of the split's scans: FROC, and its per-scan time composed the same way
    (measured pre-processing + measured time per batch of DENSE_BATCH windows x batches)."""
    classify_spec = spec.classify
    scans = data.froc_scans(split)
    predict = probabilities(classify_onnx)
    evaluation = evaluate_scans(lambda p: run_dense(predict, p, spec.patch_size, spec.candidates), scans)
    m = measure_at_batch(target, classify_onnx, classify_spec.compression.quant, classify_spec.input_shape,
                         DENSE_BATCH)
    batches = sum(math.ceil(r.tiles / DENSE_BATCH) for r in evaluation.runs) / len(evaluation.runs)
    # Dense windows need no screening seeds, so their search is not charged to it.
    prep = [[t - p.seed_ms for t in data.prepare_ms[p.series_uid]] for p, _ in scans]
    measurement, latency = compose_latency(prep, {"classify": (m, batches, f"batch of {DENSE_BATCH} windows")},
                                           len(scans))
    return {"latency": measurement.model_dump() | latency.latency_fields(), "froc": evaluation.froc.metrics(),
            "windows_per_scan": evaluation.mean_tiles,
            "wall_ms_per_scan": sum(sum(r.timing_ms.values()) for r in evaluation.runs) / len(evaluation.runs),
            "evaluation": evaluation}


# -- the end of a nodule search ---------------------------------------------------------------------------------
def _remeasure(run: SearchRun, r: TrialResult, data: NoduleData) -> tuple[Measurement, ScanLatency]:
    """Both stages measured again, composed with the runs per scan found during the search."""
    ctx = run.context
    spec, screen_onnx, classify_onnx = load_pipeline(ctx.trial_dir(r.trial))
    classify_spec = spec.classify
    screen = measure_at_batch(ctx.target, screen_onnx, "fp32", spec.screen.input_shape, SCREEN_BATCH)
    classify = ctx.target.measure(classify_onnx, classify_spec.compression.quant, classify_spec.input_shape,
                                  load_model(classify_spec, classify_onnx.parent / "model.pt")
                                  if ctx.target.needs_model else None)
    assert r.scan_latency is not None  # every nodule result has one
    passed = r.scan_latency.stages["classify"].runs
    measurement, latency, _ = _scan_time(data, spec, screen, classify, passed)
    return measurement, latency


def _score_on_test(run: SearchRun, r: TrialResult) -> tuple[dict[str, Any], Evaluation]:
    """Patch metrics at the validation threshold and the pipeline's FROC, once, on the test scans."""
    ctx = run.context
    folder = ctx.trial_dir(r.trial)
    spec, screen_onnx, _ = load_pipeline(folder)
    classify_spec = spec.classify
    artifact = deployed_artifact(classify_spec, folder / CLASSIFY_DIR)
    task = ctx.task
    assert isinstance(task, NoduleTask)
    metrics: dict[str, Any] = dict(task.evaluate(artifact, classify_spec, ctx.dataset, "test",
                                                 threshold=float(r.metrics["val"]["threshold"]),  # type: ignore[arg-type]
                                                 target_sensitivity=run.settings.target_sensitivity))
    evaluation = task.evaluate_pipeline(TwoStage(spec, screen_onnx, artifact), ctx.dataset, "test")
    metrics |= evaluation.froc.metrics()
    write_json(folder / "test_metrics.json", metrics)
    return metrics, evaluation


def _values(objectives: list[Objective], r: TrialResult) -> list[float]:
    return [o.value(r) for o in objectives]


def finalize_nodule(run: SearchRun, *, keep_artifacts: str, say: Any) -> dict[str, Any]:
    """pareto.json for a nodule study: members re-measured as whole pipelines, scored once on the test scans, and
    the dense sliding-window baseline of the knee member's second stage measured on the same test scans."""
    ctx, settings = run.context, run.settings
    data = nodule_data(ctx.dataset, ctx.results_dir.parent)
    objectives = resolve_objectives(settings.objectives)
    directions = [o.direction for o in objectives]
    results = completed_results(run)
    candidates = [r for r in results if feasible(run, r)]
    on = non_dominated([_values(objectives, r) for r in candidates], directions) if candidates else []
    front = [r for r, keep in zip(candidates, on) if keep]

    say(f"re-measuring {len(front)} pipeline(s) (both stages) on {ctx.profile.name} in one session ...")
    remeasured = {r.trial: _remeasure(run, r, data) for r in front}
    final = [r.model_copy(update={"measurement": remeasured[r.trial][0], "scan_latency": remeasured[r.trial][1]})
             for r in front]
    still = non_dominated([_values(objectives, r) for r in final], directions) if final else []
    members = [r for r, keep in zip(final, still) if keep]
    dropped = [r.trial for r, keep in zip(final, still) if not keep]

    say(f"scoring {len(members)} pipeline(s) once on the test scans ...")
    tests = {r.trial: _score_on_test(run, r) for r in members}
    knee_trial = members[knee([_values(objectives, r) for r in members], directions)].trial if members else None
    dense = None
    if knee_trial is not None:
        say(f"dense sliding-window baseline: trial {knee_trial}'s second stage over the whole lungs of the test "
            "scans ...")
        spec, _, classify_onnx = load_pipeline(ctx.trial_dir(knee_trial))
        dense = dense_baseline(ctx.target, spec, classify_onnx, data, "test")
        two_stage = next(r for r in members if r.trial == knee_trial)
        evaluation = tests[knee_trial][1]
        dense.pop("evaluation")
        dense |= {"trial": knee_trial, "two_stage_scan_ms": two_stage.measurement.p50_ms,
                  "two_stage_froc": evaluation.froc.metrics(),
                  "speedup": dense["latency"]["p50_ms"] / two_stage.measurement.p50_ms}

    def entry(r: TrialResult) -> dict[str, Any]:
        assert r.scan_latency is not None and r.pipeline is not None
        folder = ctx.trial_dir(r.trial)
        return {
            "trial": r.trial, "is_baseline": False, "baseline": None, "summary": NoduleSpec.model_validate(
                r.pipeline).summary(), "spec": r.pipeline, "params": r.params, "macs": r.macs,
            "metrics": {"val": r.metrics["val"], "test": tests[r.trial][0]},
            "metrics_note": "auc, accuracy, sensitivity, specificity, threshold: the second stage on its patches; "
                            "cpm, sensitivity_at_fp: the whole pipeline on whole scans (FROC)",
            "latency": r.measurement.model_dump() | r.scan_latency.latency_fields(),
            "latency_by_stage": {k: m.model_dump() for k, m in r.latency_by_stage.items()},
            "objectives": {o.name: o.value(r) for o in objectives},
            "compression": compression_effect(r), "flags": r.flags,
            "artifacts": {"pipeline": str(folder / PIPELINE_FILE),
                          "screen_onnx": str(folder / SCREEN_DIR / DEPLOYED_ONNX),
                          "classify_onnx": str(folder / CLASSIFY_DIR / DEPLOYED_ONNX)},
        }

    states = [t.state.name for t in run.study.get_trials(deepcopy=False)]
    doc = {
        "schema_version": SCHEMA_VERSION, "study": run.study.study_name, "task": settings.task,
        "hardware": settings.hardware,
        "objectives": [{"name": o.name, "direction": o.direction} for o in objectives],
        "constraints": settings.constraints.as_dict() | {"latency_unit": "one whole scan"},
        "target_sensitivity": settings.target_sensitivity,
        "members": [entry(r) for r in members], "baselines": [], "dense_baseline": dense,
        "knee_trial": knee_trial,
        "remeasured": {"members_before": len(front), "members_after": len(members), "dropped": dropped,
                       "note": "both stages of every front member were measured again in one session; dominance "
                               "uses those numbers"},
        "trials": {state: states.count(state) for state in sorted(set(states))},
        "data": data.describe() | {"fingerprint": ctx.dataset.fingerprint},
        "search_space": ctx.space.name, "latency_target": ctx.target.describe(),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(ctx.results_dir / "pareto.json", doc)
    if keep_artifacts != "all":
        keep = {r.trial for r in front}
        prune_artifacts(ctx.results_dir, keep)
        for trial_dir in (ctx.results_dir / "trials").glob("*"):
            if trial_dir.name.isdigit() and int(trial_dir.name) not in keep:
                for stage in (SCREEN_DIR, CLASSIFY_DIR):
                    for name in ARTIFACTS:
                        (trial_dir / stage / name).unlink(missing_ok=True)
    return doc

