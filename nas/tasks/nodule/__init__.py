"""Lung nodule detection in CT: a 2D slab screener on seeds in the lungs, a 3D patch classifier on its candidates.

Each stage is a binary classifier this task trains and scores like any other (`train`, `scores`, `evaluate` act on
the stage a spec's family belongs to: 2D screen tiles, 3D classify patches). The pipeline as a whole is scored by
FROC on whole scans (`evaluate_pipeline`): sensitivity at LUNA16's false-positive rates and their mean, the CPM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.data import Dataset
from nas.errors import ConfigError
from nas.export import Normalisation, Predictor
from nas.hardware import HardwareProfile, Measurement, Target
from nas.metrics import binary_metrics, threshold_for_sensitivity
from nas.spec import Spec, TrainingSpec
from nas.tasks._candidate import Candidate, CandidateScore, Stage, measure_at_batch
from nas.tasks._latency import ScanLatency
from nas.tasks._objectives import Objective
from nas.tasks._task import Task, register_task

if TYPE_CHECKING:  # the stages' modules need torch and scipy: they load when the task works, not when it is listed
    import torch
    from torch import nn

    from nas.hardware.runtime_choice import RuntimeChoice
    from nas.spaces import SearchSpace
    from nas.tasks.nodule.data import NoduleData
    from nas.tasks.nodule.pipeline import Evaluation, TwoStage
    from nas.tasks.nodule.space import NoduleSpec
    from nas.train import Distillation

__all__ = ["NoduleTask", "dense_baseline", "stage_of"]

MINING_SHARE = 1 / 3
"""The screener's hard-negative pass: this share of its recipe's epochs (at least one), at this share of its rate."""


def mining_pass(recipe: TrainingSpec) -> TrainingSpec:
    return recipe.model_copy(update={"epochs": max(1, round(recipe.epochs * MINING_SHARE)),
                                     "lr": recipe.lr * MINING_SHARE})


def stage_of(spec: Spec) -> str:
    """'classify' for a 3D family's spec, 'screen' for a 2D one."""
    return "classify" if spec.spatial_dims == 3 else "screen"


class NoduleTask(Task):
    name = "nodule"
    description = "lung nodule detection in CT: 2D slab screener + 3D patch classifier, scored by FROC (CPM)"
    default_space = "nodule"
    metric_names = ("auc", "accuracy", "sensitivity", "specificity", "threshold", "cpm", "sensitivity_at_fp")
    default_objectives = ("cpm", "latency_p95")
    objectives = (Objective("cpm", "maximize", "validation CPM of a detection pipeline (mean sensitivity at 1/8..8 "
                            "FPs per scan)", lambda r: float(r.metrics["val"]["cpm"])),)
    primary_metric = "cpm"
    metric_labels = {"auc": "patch AUC", "cpm": "CPM"}
    table_metrics = ("cpm",)
    latency_unit = "one whole scan"
    metrics_note = ("auc, accuracy, sensitivity, specificity, threshold: the second stage on its patches; "
                    "cpm, sensitivity_at_fp: the whole pipeline on whole scans (FROC)")
    supports_rungs = False

    @property
    def normalisation(self) -> Normalisation:  # type: ignore[override]
        from nas.tasks.nodule.volume import HU_HIGH, HU_LOW, MEAN, STD

        return Normalisation(mean=MEAN, std=STD, source=f"clip((HU - {HU_LOW:g}) / {HU_HIGH - HU_LOW:g}, 0, 1)")

    def load_data(self, path: str | Path | None, *, positive_class: str | None = None) -> Dataset:
        if positive_class not in (None, "nodule"):
            raise ConfigError(f"--positive-class {positive_class!r}: the nodule task's positive class is 'nodule'")
        from nas.tasks.nodule.data import load_nodule_dataset

        return load_nodule_dataset(path)

    def latency_budget_ms(self, profile: HardwareProfile) -> float | None:
        """No default budget: a profile's budget is for one inference of one model, not for a whole scan."""
        return None

    def train(
        self, model: nn.Module, spec: Spec, dataset: Dataset, *, seed: int, deadline: float | None,
        recipe: TrainingSpec | None = None, distill: Distillation | None = None, device: str = "cpu",
        stop_after: int | None = None, resume: dict[str, Any] | None = None,
        upstream: dict[str, tuple[Spec, nn.Module]] | None = None,
    ) -> dict[str, Any]:
        """Each stage on its examples, with the screener's false positives on the training scans
        (`NoduleData.screener_false_positives`): stage 2, trained after the screener, learns to reject them; the
        screener itself, after a first pass, trains a second, shorter pass with its own (hard-negative mining)."""
        if distill is not None:
            raise ConfigError("the nodule task does not distil; remove `distill` from the space's compression")
        import torch

        from nas.export import torch_predictor
        from nas.tasks.nodule.data import nodule_data
        from nas.tasks.nodule.pipeline import probabilities
        from nas.train import train_classifier

        stage = stage_of(spec)
        data = nodule_data(dataset)
        inputs, labels = data.inputs("train", stage, spec.input_size)
        hard = 0
        if stage == "classify" and upstream and "screen" in upstream:
            screen_spec, screener = upstream["screen"]
            more, more_labels = data.screener_false_positives(probabilities(torch_predictor(screener)),
                                                              screen_spec.input_size, stage, spec.input_size)
            inputs, labels, hard = torch.cat([inputs, more]), torch.cat([labels, more_labels]), len(more_labels)
        recipe = recipe or spec.training
        log = train_classifier(model, inputs, labels, recipe, seed=seed, deadline=deadline, device=device,
                               stop_after=stop_after, resume=resume)
        out = {"stage": stage, "examples": len(labels), "positives": int(labels.sum()),
               "screener_false_positives": hard, "epoch_losses": log.epoch_losses, "train_seconds": log.seconds,
               "state": log.state}
        if stage == "screen" and stop_after is None:
            more, more_labels = data.screener_false_positives(probabilities(torch_predictor(model)),
                                                              spec.input_size, stage, spec.input_size)
            second = train_classifier(model, torch.cat([inputs, more]), torch.cat([labels, more_labels]),
                                      mining_pass(recipe), seed=seed + 1, deadline=deadline, device=device)
            out |= {"screener_false_positives": len(more_labels), "mining_epoch_losses": second.epoch_losses,
                    "train_seconds": log.seconds + second.seconds}
        return out

    def sample_inputs(self, spec: Spec, dataset: Dataset, count: int | None = 16, split: str = "val") -> torch.Tensor:
        from nas.tasks.nodule.data import nodule_data

        return nodule_data(dataset).inputs(split, stage_of(spec), spec.input_size)[0][:count]

    def scores(self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str) -> np.ndarray:
        from nas.tasks.nodule.data import nodule_data
        from nas.tasks.nodule.pipeline import probabilities

        inputs, _ = nodule_data(dataset).inputs(split, stage_of(spec), spec.input_size)
        return probabilities(artifact)(inputs.numpy())

    def evaluate(
        self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str, *, threshold: float | None,
        target_sensitivity: float,
    ) -> dict[str, float]:
        """Patch-level metrics of one stage on its split's examples (nodules centred, non-nodule marks and random
        lung), not detection metrics: those are `evaluate_pipeline`'s."""
        from nas.tasks.nodule.data import nodule_data

        scores = self.scores(artifact, spec, dataset, split)
        labels = nodule_data(dataset).inputs(split, stage_of(spec), spec.input_size)[1].numpy()
        if threshold is None:
            threshold = threshold_for_sensitivity(labels, scores, target_sensitivity)
        return binary_metrics(labels, scores, threshold)

    def evaluate_pipeline(self, detector: TwoStage, dataset: Dataset, split: str) -> Evaluation:
        """FROC of the whole pipeline on the split's scans (without a validation scan, estimated: see nodule.data)."""
        from nas.tasks.nodule.data import nodule_data
        from nas.tasks.nodule.pipeline import evaluate_scans

        data: NoduleData = nodule_data(dataset)
        if split == "val" and data.estimated_val:
            return data.estimate(detector)
        return evaluate_scans(detector.run, data.froc_scans(split))

    # -- a candidate: a 2D screener (fp32, batches of tiles) then a 3D classifier (compressed, one patch a run)
    def sample_candidate(self, space: SearchSpace, trial: Any, *, in_channels: int, max_epochs: int | None,
                         epochs: int | None) -> Candidate:
        from nas.tasks.nodule.space import sample_nodule_spec

        return self._candidate(sample_nodule_spec(space, trial, max_epochs=max_epochs))

    def candidate_of(self, spec: Spec, record: dict[str, Any] | None) -> Candidate:
        from nas.tasks.nodule.space import NoduleSpec

        return self._candidate(NoduleSpec.model_validate(record))

    def _candidate(self, pipeline: NoduleSpec) -> Candidate:
        from nas.tasks.nodule.pipeline import CLASSIFY_DIR, SCREEN_BATCH, SCREEN_DIR

        return Candidate((Stage("screen", pipeline.screen, SCREEN_DIR, SCREEN_BATCH, compressed=False),
                          Stage("classify", pipeline.classify, CLASSIFY_DIR, pipeline.views)),
                         pipeline.model_dump(mode="json"))

    def with_stage_spec(self, candidate: Candidate, stage: str, spec: Spec) -> Candidate:
        return self._candidate(self._pipeline(candidate).model_copy(update={stage: spec}))

    @staticmethod
    def _pipeline(candidate: Candidate) -> NoduleSpec:
        from nas.tasks.nodule.space import NoduleSpec

        return NoduleSpec.model_validate(candidate.record)

    def summary(self, candidate: Candidate) -> str:
        return self._pipeline(candidate).summary()

    def write_candidate(self, candidate: Candidate, folder: Path) -> None:
        from nas.tasks.nodule.pipeline import PIPELINE_FILE

        (folder / PIPELINE_FILE).write_text(self._pipeline(candidate).model_dump_json(indent=2))

    def compose_latency(self, candidate: Candidate, dataset: Dataset, measured: dict[str, Measurement],
                        runs: dict[str, float] | None = None) -> tuple[Measurement, ScanLatency | None]:
        """One validation scan's time: measured pre-processing, stage 1 times its batches of seed tiles, stage 2
        times the candidates that passed (phase 1: the cap, `candidates`)."""
        from nas.tasks.nodule.data import nodule_data
        from nas.tasks.nodule.pipeline import SCREEN_BATCH, compose_latency, screen_batches

        pipeline = self._pipeline(candidate)
        data = nodule_data(dataset)
        scans = data.froc_scans("val")
        batches = [screen_batches(prepared, pipeline.screen.input_size)[1] for prepared, _ in scans]
        passed = (runs or {}).get("classify", float(pipeline.candidates))
        return compose_latency([data.prepare_ms[prepared.series_uid] for prepared, _ in scans],
                               {"screen": (measured["screen"], sum(batches) / len(batches), f"batch of {SCREEN_BATCH} tiles"),
                                "classify": (measured["classify"], passed, _patch_unit(pipeline.views))}, len(scans))

    def budget_what(self, candidate: Candidate) -> str:
        return f"per-scan time (with all {self._pipeline(candidate).candidates} candidates)"

    def score_candidate(self, candidate: Candidate, artifacts: dict[str, Path | Predictor], dataset: Dataset,
                        split: str) -> CandidateScore:
        """The whole pipeline's FROC on the split's scans, and the candidates per scan that reached stage 2."""
        from nas.tasks.nodule.data import nodule_data
        from nas.tasks.nodule.pipeline import TwoStage

        detector = TwoStage(self._pipeline(candidate), artifacts["screen"], artifacts["classify"])
        evaluation = self.evaluate_pipeline(detector, dataset, split)
        flags = ["validation FROC is estimated (validation patients' nodules against the screener's false positives "
                 "beside them, as many per scan as a training scan passes on): it ranks candidates; only the test "
                 "scans measure detection"] \
            if split == "val" and nodule_data(dataset).estimated_val else []
        metrics = evaluation.froc.metrics()
        if split == "test":
            metrics["patch"] = self.patch_figures(detector, dataset)
        return CandidateScore(metrics, {"classify": evaluation.mean_passed}, flags, evaluation)

    def patch_figures(self, detector: TwoStage, dataset: Dataset,
                      scan_false_positives: list[float] | None = None) -> dict[str, dict[str, Any]]:
        """Each stage's AUC on the test patients' examples with its bootstrap 95% interval, and stage 2's on their
        nodules against the screener's false positives beside them (`classify_vs_screen_fp`): hundreds of nodules,
        which say far more about the models than the few nodules of the test scans. Given `scan_false_positives`
        (stage-2 scores of whole-scan candidates that hit no reference finding), also those nodules against them
        (`classify_vs_scan_fp`)."""
        from nas.tasks.nodule.data import nodule_data

        data = nodule_data(dataset)
        figures = {}
        for stage, spec, predict in (("screen", detector.spec.screen, detector.screen_p),
                                     ("classify", detector.spec.classify, detector.classify_p)):
            inputs, labels = data.inputs("test", stage, spec.input_size)
            figures[stage] = _auc_figures(labels.numpy(), predict(inputs.numpy()))
        if data.material is not None:
            labels, scores = data.against_false_positives(detector, "test")
            figures["classify_vs_screen_fp"] = _auc_figures(labels, scores)
            if scan_false_positives is not None:
                both = np.r_[np.ones(int(labels.sum()), int), np.zeros(len(scan_false_positives), int)]
                figures["classify_vs_scan_fp"] = _auc_figures(both, np.r_[scores[labels == 1], scan_false_positives])
        return figures

    def describe_data(self, dataset: Dataset) -> dict[str, Any]:
        from nas.tasks.nodule.data import nodule_data

        return nodule_data(dataset).describe() | {"fingerprint": dataset.fingerprint}

    def artifacts(self, folder: Path) -> dict[str, str]:
        from nas.tasks.nodule.pipeline import CLASSIFY_DIR, DEPLOYED_ONNX, PIPELINE_FILE, SCREEN_DIR

        return {"pipeline": str(folder / PIPELINE_FILE), "screen_onnx": str(folder / SCREEN_DIR / DEPLOYED_ONNX),
                "classify_onnx": str(folder / CLASSIFY_DIR / DEPLOYED_ONNX)}

    def front_extras(self, target: Target, candidate: Candidate | None, folder: Path | None, scan_ms: float | None,
                     test: CandidateScore | None, dataset: Dataset, say: Callable[[str], None],
                     runtime_choice: RuntimeChoice | None = None) -> dict[str, Any]:
        """The dense sliding-window baseline: the knee member's second stage, as it ships (its runtime), over the
        whole lungs of the test scans, against the two-stage pipeline on the same scans at its sensitivity at 8 FP
        per scan (`speedup` is a lower bound where the baseline's finest stride still finds less)."""
        from nas.tasks.nodule.data import nodule_data
        from nas.tasks.nodule.froc import FP_RATES, rate_key
        from nas.tasks.nodule.pipeline import CLASSIFY_DIR, DEPLOYED_ONNX

        if candidate is None or folder is None or scan_ms is None or test is None:
            return {"dense_baseline": None}
        say(f"dense sliding-window baseline: trial {folder.name}'s second stage over the whole lungs of the test "
            "scans ...")
        sensitivity = test.metrics["sensitivity_at_fp"][rate_key(FP_RATES[-1])]
        dense = dense_baseline(target, self._pipeline(candidate), folder / CLASSIFY_DIR / DEPLOYED_ONNX,
                               nodule_data(dataset), "test", sensitivity, runtime_choice, say)
        dense.pop("evaluation")
        found = dense["froc"]["sensitivity_at_fp"][rate_key(FP_RATES[-1])]
        say(f"dense baseline at stride {dense['stride']} ({dense['windows_per_scan']:,.0f} windows per scan): "
            f"{dense['latency']['p50_ms']:,.0f} ms per scan, sensitivity {found:.2f} at 8 FP per scan; the two-stage "
            f"pipeline ({scan_ms:,.0f} ms, sensitivity {sensitivity:.2f}) takes "
            f"{scan_ms / dense['latency']['p50_ms']:.2f} of its time" + ("" if dense["equal_sensitivity"] else
                               ", and less than that at equal sensitivity, which the finest stride did not reach"))
        return {"dense_baseline": dense | {"trial": int(folder.name), "two_stage_scan_ms": scan_ms,
                                           "two_stage_froc": test.metrics,
                                           "speedup": dense["latency"]["p50_ms"] / scan_ms}}

    def export_bundle(self, open_trial: Callable[[], tuple[Path, Any, Task, Dataset]], out: Path) -> dict[str, Any]:
        """Both stage models, the pipeline config and a card: what `nas detect --model` reads."""
        from nas.tasks.nodule.export import export_nodule_trial

        return export_nodule_trial(*open_trial(), out)

    def describe_metrics(self, metrics: dict[str, Any]) -> str:
        return f"CPM {metrics['cpm']:.3f}, patch AUC {metrics['auc']:.4f}"

    def describe_latency(self, m: Measurement) -> str:
        return f"{m.p50_ms:.0f} ms per scan (p95 {m.p95_ms:.0f} ms, {m.backend}, {m.precision})"


def _patch_unit(views: int) -> str:
    return "one candidate patch" if views == 1 else f"one candidate patch in {views} views"


def _auc_figures(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    from nas.metrics import bootstrap_ci

    return {"auc": binary_metrics(labels, scores, 0.5)["auc"], "auc_95ci": bootstrap_ci(labels, scores, 0.5)["auc"],
            "positives": int(labels.sum()), "examples": int(len(labels))}


def dense_baseline(target: Target, spec: NoduleSpec, classify_onnx: Path, data: NoduleData, split: str,
                   sensitivity: float, runtime_choice: RuntimeChoice | None = None,
                   say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Stage 2 alone over every lung window of the split's scans, one view per window whatever the pipeline's
    `views` (the cheaper baseline: eight views of every window would cost it eight times as much): FROC, and its
    per-scan time composed the same way (measured pre-processing + measured time per batch of DENSE_BATCH windows
    x batches), on the runtime the pipeline's second stage ships on (`runtime_choice`; None: the target's own):
    timed on another runtime, the baseline would differ from the pipeline by more than screening.

    Compared at equal sensitivity: the windows step by half a window, then finer (DENSE_STRIDES) while the
    baseline's sensitivity at 8 FP per scan stays below `sensitivity` (the pipeline's on the same scans) and the
    finer pass would end within DENSE_REFINE_LIMIT_S here (8x the windows of a slow 3D model can take half an hour).
    Each stride tried is listed; the figures are the last one's, and unless `equal_sensitivity`, its time is only a
    lower bound on what the dense baseline needs to find as much."""
    from nas.hardware.deploy import shipped_artifact
    from nas.hardware.runtime_choice import shipped_timing
    from nas.tasks.nodule.froc import FP_RATES, rate_key
    from nas.tasks.nodule.pipeline import (
        DENSE_BATCH,
        DENSE_REFINE_LIMIT_S,
        DENSE_STRIDES,
        compose_latency,
        evaluate_scans,
        probabilities,
        run_dense,
    )

    scans = data.froc_scans(split)
    predict = probabilities(shipped_artifact(runtime_choice, classify_onnx))
    shipped_on, shipped = shipped_timing(target, runtime_choice, classify_onnx)
    m = measure_at_batch(shipped_on, shipped, spec.classify.compression.quant, spec.classify.input_shape, DENSE_BATCH)
    # Dense windows need no screening seeds, so their search is not charged to it.
    prep = [[t - p.seed_ms for t in data.prepare_ms[p.series_uid]] for p, _ in scans]
    tried: list[dict[str, Any]] = []
    skipped = None
    for stride in sorted({max(1, spec.patch_size // fraction) for fraction in DENSE_STRIDES}, reverse=True):
        if tried:
            expected_s = tried[-1]["wall_ms_per_scan"] * len(scans) / 1000 * (tried[-1]["stride"] / stride) ** 3
            if expected_s > DENSE_REFINE_LIMIT_S:
                skipped = (f"stride {stride}: about {expected_s / 60:.0f} min here "
                           f"(limit {DENSE_REFINE_LIMIT_S // 60} min)")
                say(f"dense baseline: {skipped}, not run")
                break
        say(f"dense baseline at stride {stride} ...")
        evaluation = evaluate_scans(lambda prepared, stride=stride: run_dense(predict, prepared, spec.patch_size,
                                                                             spec.candidates, stride), scans)
        batches = sum(math.ceil(r.tiles / DENSE_BATCH) for r in evaluation.runs) / len(evaluation.runs)
        measurement, latency = compose_latency(prep, {"classify": (m, batches, f"batch of {DENSE_BATCH} windows")},
                                               len(scans))
        found = evaluation.froc.sensitivity_at_fp[rate_key(FP_RATES[-1])]
        tried.append({"stride": stride, "latency": measurement.model_dump() | latency.latency_fields(),
                      "froc": evaluation.froc.metrics(), "windows_per_scan": evaluation.mean_tiles,
                      "wall_ms_per_scan": np.mean([sum(r.timing_ms.values()) for r in evaluation.runs]),
                      "evaluation": evaluation})
        if found >= sensitivity:
            break
    summary = [{"stride": t["stride"], "windows_per_scan": t["windows_per_scan"], "scan_ms": t["latency"]["scan_ms"],
                "froc": t["froc"]} for t in tried]
    return tried[-1] | {"equal_sensitivity": found >= sensitivity, "strides": summary, "finer_skipped": skipped}


register_task(NoduleTask())
