"""`nas export`: a chosen trial as a deployable folder (ONNX, the chosen runtime's artifact, spec, weights, model
card), verified."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas._io import write_json
from nas.clinical.calibration import (
    ECE_BINS, calibrated_scores, expected_calibration_error, fit_temperature, in_band, referral_band, score_health,
)
from nas.clinical.inputs import DICOM_MODALITIES
from nas.compress import load_model
from nas.compress.quantize import CALIBRATION_IMAGES
from nas.data import Dataset
from nas.defaults import EXPORT_FORMATS, INT8_MAX_AUC_DROP, REFER_RATE
from nas.errors import ConfigError, StudyError, unknown_name
from nas.export import check_parity, preprocessing, to_onnx
from nas.hardware import load_profile, open_target
from nas.hardware.deploy import Predictor, artifact_files, deployed_parity, predictor, write_artifact
from nas.hardware.runtime_choice import deployed_runtime, runtime_target
from nas.hardware.sessions import RUNTIMES
from nas.hardware.tensorrt_engine import build_engine, import_tensorrt
from nas.metrics import binary_metrics, bootstrap_ci, threshold_for_sensitivity
from nas.report.html import study_dir as find_study_dir
from nas.report.model_card import write_model_card
from nas.search.result import TrialResult
from nas.search.runner import CACHE_DIR
from nas.spec import Spec
from nas.tasks import Task, get_task

SCORE_HISTOGRAM_BINS = 20
"""Bins of the validation score histogram io.json keeps as the reference `nas monitor` measures drift against."""


def trial_dir(results: Path, study: str, trial: int) -> Path:
    trials_dir = find_study_dir(results, study) / "trials"
    folder = trials_dir / str(trial)
    if not folder.is_dir():
        trials = sorted(int(p.name) for p in trials_dir.glob("*") if p.name.isdigit())
        raise StudyError(f"study {study!r} has no trial {trial}; trials: {', '.join(map(str, trials)) or 'none'}")
    return folder


def load_result(folder: Path, study: str, trial: int) -> TrialResult:
    for name, why in (("failure.json", "failed"), ("infeasible.json", "was stopped before training (infeasible)"),
                      ("stopped.json", "was stopped early at a multi-fidelity rung (not fully trained)")):
        if (folder / name).exists():
            reason = json.loads((folder / name).read_text())["reason"]
            raise StudyError(f"trial {trial} of {study!r} {why}: {reason}; it cannot be exported")
    if not (folder / "result.json").exists():
        raise StudyError(f"trial {trial} of {study!r} has not finished; it cannot be exported yet")
    return TrialResult.model_validate_json((folder / "result.json").read_text())


def study_task(results: Path, study: str) -> str:
    return json.loads((find_study_dir(results, study) / "settings.json").read_text())["task"]


def open_trial(results: Path, study: str, trial: int,
               data: str | None = None) -> tuple[Path, TrialResult, Task, Dataset]:
    """A finished trial's folder and result, with its study's task and data (decoded scans from the search's cache)."""
    folder = trial_dir(Path(results), study, trial)
    task, dataset = study_dataset(folder.parent.parent, data)
    dataset.decoded_cache = Path(results) / CACHE_DIR / "decoded"
    return folder, load_result(folder, study, trial), task, dataset


def study_dataset(study_dir: Path, data: str | None) -> tuple[Task, Dataset]:
    """The study's task and data (or `data`, which must be the same data, e.g. moved to another path)."""
    settings = json.loads((study_dir / "settings.json").read_text())
    task = get_task(settings["task"])
    path = data or settings["data"]
    if not Path(path).exists():
        raise StudyError(f"the study's data {path} is not on this machine; pass --data with its path here")
    dataset = task.load_data(path)
    if dataset.fingerprint != settings["data_fingerprint"]:
        raise StudyError(f"{path} is not the data study {study_dir.name!r} was trained on (fingerprint differs)")
    return task, dataset


def export_trial(
    results: Path, study: str, trial: int, out: Path, *, data: str | None = None, fmt: str | None = None,
    max_auc_drop: float = INT8_MAX_AUC_DROP, refer_rate: float = REFER_RATE, runtime: str | None = None,
) -> dict[str, Any]:
    """Rebuild the trial's model from its spec and weights and ship it as `fmt` for `runtime` (default: the
    runtime the search chose for that precision, settled point 19), verified.

    The float ONNX is checked against PyTorch, and so is the deployed artifact run by its runtime (the float ONNX,
    its INT8 version, or OpenVINO's IR); the deployed artifact gets a
    temperature fitted on its validation logits, its operating threshold on the calibrated validation scores and
    a referral band holding the `refer_rate` least certain validation cases; it must keep validation AUC within
    `max_auc_drop` of the recorded one, and is scored once on test with bootstrap intervals for the model card.
    """
    if fmt is not None and fmt not in EXPORT_FORMATS:
        raise ConfigError(unknown_name("export format", fmt, EXPORT_FORMATS))
    if not 0 <= refer_rate < 1:
        raise ConfigError(f"--refer-rate must be in [0, 1) (a fraction of validation cases), got {refer_rate}")
    if runtime is not None and runtime not in RUNTIMES:
        raise ConfigError(unknown_name("runtime", runtime, RUNTIMES))
    if fmt == "tensorrt":
        import_tensorrt()  # before any work: a clear message where TensorRT is absent
    folder = trial_dir(results, study, trial)
    result = load_result(folder, study, trial)
    fmt = fmt or ("int8" if result.spec.compression.quant == "int8" else "onnx")  # default: what the search scored
    weights = folder / "model.pt"
    if not weights.exists():
        pareto = Path(results) / study / "pareto.json"
        kept = [m["trial"] for m in json.loads(pareto.read_text())["members"]] if pareto.exists() else []
        raise StudyError(f"trial {trial}'s weights were not kept (only front members and baselines keep theirs; "
                         f"run the search with --keep-artifacts all to keep every trial's); front: {kept}")
    study_dir = Path(results) / study
    settings = json.loads((study_dir / "settings.json").read_text())
    spec = result.spec
    task, dataset = study_dataset(study_dir, data)
    model = load_model(spec, weights)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = to_onnx(model, spec.input_shape, out / "model.onnx")
    diff = check_parity(model, onnx_path, task.sample_inputs(spec, dataset))
    (out / "spec.json").write_text(spec.to_json())
    shutil.copyfile(weights, out / "model.pt")
    files = ["model.onnx", "model.pt", "spec.json"]

    precision = "int8" if fmt == "int8" or (fmt == "tensorrt" and spec.compression.quant == "int8") else "fp32"
    runtime = "onnxruntime" if fmt == "tensorrt" else runtime or deployed_runtime(result.runtime_choice, precision)
    calibration = (task.sample_inputs(spec, dataset, CALIBRATION_IMAGES, split="train").numpy()
                   if precision == "int8" else None)
    deployed = write_artifact(runtime, precision, onnx_path, out, calibration, method=spec.compression.calibration)
    files += [f.name for f in artifact_files(deployed) if f != onnx_path]
    run = predictor(deployed, runtime)
    parity = deployed_parity(model, deployed, run, runtime, precision, task.sample_inputs(spec, dataset).numpy())
    # Compared with what the search recorded for this precision: the float model's metrics for a float export of
    # an INT8 candidate, else the scored artifact's.
    recorded = result.float_metrics.get("val", result.metrics["val"]) if precision == "fp32" else result.metrics["val"]
    val_labels, val_logits = dataset.split("val").labels, _logits(run, task, spec, dataset, "val")
    temperature = fit_temperature(val_logits, val_labels)
    val_scores = calibrated_scores(val_logits, temperature)
    threshold = threshold_for_sensitivity(val_labels, val_scores, settings["target_sensitivity"])
    val = binary_metrics(val_labels, val_scores, threshold)
    if recorded["auc"] - val["auc"] > max_auc_drop:
        raise StudyError(f"the {runtime} {precision} artifact's validation AUC {val['auc']:.4f} is "
                         f"{recorded['auc'] - val['auc']:.4f} "
                         f"below the recorded {recorded['auc']:.4f} (allowed: {max_auc_drop}); not shipped as {fmt}")
    test_labels, test_logits = dataset.split("test").labels, _logits(run, task, spec, dataset, "test")
    test_scores = calibrated_scores(test_logits, temperature)
    test = binary_metrics(test_labels, test_scores, threshold)
    band = referral_band(val_scores, threshold, refer_rate)
    calibration = {"method": "temperature", "temperature": temperature, "ece_bins": ECE_BINS, "ece": {
        split: {"before": expected_calibration_error(labels, calibrated_scores(logits, 1.0)),
                "after": expected_calibration_error(labels, calibrated_scores(logits, temperature))}
        for split, labels, logits in (("val", val_labels, val_logits), ("test", test_labels, test_logits))},
        "health": score_health(val_scores, band, refer_rate).as_dict()}
    referred = in_band(test_scores, band)
    referral = {"refer_rate": refer_rate, "band": list(band),
                "val_referred": float(in_band(val_scores, band).mean()), "test_referred": float(referred.mean()),
                "test_not_referred": _operating_point(test_labels[~referred], test_scores[~referred], threshold)}
    counts, edges = _score_histogram(val_scores)

    latency = _latency(folder, result, study_dir, deployed, runtime, precision, spec.input_shape, model)
    engine = None
    if fmt == "tensorrt":  # built from the artifact verified above; its speed is measured on the target
        engine = build_engine(deployed, out / "model.engine", precision=spec.compression.quant,
                              input_shape=spec.input_shape)
        files.append(engine["file"])
    io = {**preprocessing(spec.input_shape, task.normalisation), "task": task.name,
          "output": "logits for [negative, positive]; score = softmax(logits / temperature)[1], calibrated",
          "file": deployed.name, "runtime": runtime, "precision": precision,
          "calibration": {"method": "temperature", "temperature": temperature},
          "threshold": threshold, "referral_band": list(band), "refer_rate": refer_rate,
          "positive_class": dataset.positive_class,
          "decision": f"positive ({dataset.positive_class}) when score >= threshold; refer to a reader when "
                      "referral_band[0] <= score <= referral_band[1]",
          "modality": list(DICOM_MODALITIES.get(task.name, ())),
          "val_scores_histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}
    write_json(out / "io.json", io)
    card = {
        "study": study, "trial": trial, "task": settings["task"], "summary": spec.summary(), "format": fmt,
        "deployed_file": deployed.name, "runtime": runtime, "runtime_choice": _choice_summary(result),
        "spec": spec.model_dump(mode="json"), "params": result.params,
        "macs": result.macs, "compression": {
            "quant": precision, "prune_ratio": spec.compression.prune_ratio,
            "pruned_layers": len(spec.compression.channels),
            "distilled_from": result.teacher if spec.compression.distill else None,
            "val_float": result.float_metrics.get("val"), "val_deployed_in_search": result.metrics["val"],
            "latency_by_precision": {k: m.model_dump() for k, m in result.latency_by_precision.items()},
            "flags": result.flags},
        "tensorrt_engine": engine,
        "metrics": {"val": val, "test": test, "test_ci95": bootstrap_ci(test_labels, test_scores, threshold),
                    "val_recorded": recorded},
        "target_sensitivity": settings["target_sensitivity"], "threshold": threshold,
        "calibration": calibration, "referral": referral,
        "latency": latency, "preprocessing": io,
        "data": {**dataset.describe(), "split_sizes": {s: len(dataset.split(s)) for s in ("train", "val", "test")}},
        "parity_max_abs_diff": diff, "deployed_parity": parity,
        "files": [*files, "io.json", "model_card.md", "model_card.json"],
    }
    write_model_card(out, card)
    return card


def _logits(run: Predictor, task: Task, spec: Spec, dataset: Dataset, split: str) -> np.ndarray:
    """The deployed artifact's logits on a whole split, run by its runtime: temperature scaling needs logits, not
    probabilities."""
    return run(task.sample_inputs(spec, dataset, None, split=split).numpy())


def _choice_summary(result: TrialResult) -> dict[str, Any] | None:
    """The search's runtime choice for the card: what shipped, why, and every runtime x precision's p50/p95."""
    choice = result.runtime_choice
    if choice is None:
        return None
    return {"runtime": choice.runtime, "precision": choice.precision, "reason": choice.reason,
            "timings": [{"runtime": t.runtime, "precision": t.precision,
                         "p50_ms": t.measurement.p50_ms if t.measurement else None,
                         "p95_ms": t.measurement.p95_ms if t.measurement else None, "skipped": t.skipped}
                        for t in choice.timings]}


def _score_histogram(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of `scores` over [0, 1] in bins of equal validation mass (quantiles), merged where scores
    tie: a calibrated model's scores can all sit in a narrow range, where equal-width bins would hold one bin."""
    inner = np.quantile(scores, np.linspace(0, 1, SCORE_HISTOGRAM_BINS + 1)[1:-1])
    edges = np.unique(np.concatenate([[0.0], inner, [1.0]]))
    return np.histogram(scores, bins=edges)


def _operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Sensitivity and specificity at `threshold` on the cases the model decides alone (AUC is left out: the
    subset may hold one class only)."""
    labels, predicted = labels.astype(bool), scores >= threshold
    return {"cases": int(labels.size), "sensitivity": float((predicted & labels).sum() / max(1, labels.sum())),
            "specificity": float((~predicted & ~labels).sum() / max(1, (~labels).sum()))}


def _latency(folder: Path, result: TrialResult, study_dir: Path, deployed: Path, runtime: str, precision: str,
             input_shape: tuple[int, ...], model: torch.nn.Module) -> dict[str, Any]:
    """The artifact the search scored keeps the study's (re-measured) latency; another runtime or precision is
    measured now with its runtime, where the study measured (this machine, its agent, or the estimate), since its
    speed is not the scored one's (INT8 can be slower, and which runtime wins depends on the model)."""
    if precision == result.spec.compression.quant and runtime == deployed_runtime(result.runtime_choice, precision):
        remeasured = folder / "remeasured.json"
        return json.loads(remeasured.read_text()) if remeasured.exists() else result.measurement.model_dump()
    run = json.loads((study_dir / "run.json").read_text()) if (study_dir / "run.json").exists() else {}
    hardware = run.get("hardware") or json.loads((study_dir / "settings.json").read_text())["hardware"]
    target = open_target(load_profile(hardware), device_url=run.get("device_url"),
                         token_file=run.get("device_token_file"), ca_file=run.get("device_ca_file"),
                         allow_estimate=bool(run.get("allow_estimate")), any_device=bool(run.get("any_device")))
    if target.how == "local":
        target = runtime_target(target, runtime)
    return target.measure(deployed, precision, input_shape,  # type: ignore[arg-type]
                          model if target.needs_model else None).model_dump()
