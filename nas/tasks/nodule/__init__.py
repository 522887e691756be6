"""Lung nodule detection in CT: a 2D slab screener on seeds in the lungs, a 3D patch classifier on its candidates.

Each stage is a binary classifier this task trains and scores like any other (`train`, `scores`, `evaluate` act on
the stage a spec's family belongs to: 2D screen tiles, 3D classify patches). The pipeline as a whole is scored by
FROC on whole scans (`evaluate_pipeline`): sensitivity at LUNA16's false-positive rates and their mean, the CPM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import Dataset
from nas.errors import ConfigError
from nas.export import Normalisation, Predictor
from nas.hardware import HardwareProfile
from nas.metrics import binary_metrics, threshold_for_sensitivity
from nas.spec import Spec, TrainingSpec
from nas.tasks._objectives import Objective
from nas.tasks._task import Task, register_task
from nas.tasks.nodule.data import NoduleData, load_nodule_dataset, nodule_data
from nas.tasks.nodule.volume import HU_HIGH, HU_LOW, MEAN, STD
from nas.tasks.nodule.pipeline import (
    Evaluation,
    TwoStage,
    evaluate_scans,
    probabilities,
)
from nas.train import Distillation, train_classifier

__all__ = ["NoduleTask", "stage_of"]


def stage_of(spec: Spec) -> str:
    """'classify' for a 3D family's spec, 'screen' for a 2D one."""
    return "classify" if spec.spatial_dims == 3 else "screen"


class NoduleTask(Task):
    name = "nodule"
    description = "lung nodule detection in CT: 2D slab screener + 3D patch classifier, scored by FROC (CPM)"
    default_space = "nodule"
    metric_names = ("auc", "accuracy", "sensitivity", "specificity", "threshold", "cpm", "sensitivity_at_fp")
    default_objectives = ("cpm", "latency_p95")
    normalisation = Normalisation(mean=MEAN, std=STD, source=f"clip((HU - {HU_LOW:g}) / {HU_HIGH - HU_LOW:g}, 0, 1)")
    objectives = (Objective("cpm", "maximize", "validation CPM of a detection pipeline (mean sensitivity at 1/8..8 "
                            "FPs per scan)", lambda r: float(r.metrics["val"]["cpm"])),)

    def load_data(self, path: str | Path | None, *, positive_class: str | None = None) -> Dataset:
        if positive_class not in (None, "nodule"):
            raise ConfigError(f"--positive-class {positive_class!r}: the nodule task's positive class is 'nodule'")
        return load_nodule_dataset(path)

    def latency_budget_ms(self, profile: HardwareProfile) -> float | None:
        """No default budget: a profile's budget is for one inference of one model, not for a whole scan."""
        return None

    def train(
        self, model: nn.Module, spec: Spec, dataset: Dataset, *, seed: int, deadline: float | None,
        recipe: TrainingSpec | None = None, distill: Distillation | None = None, device: str = "cpu",
        stop_after: int | None = None, resume: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if distill is not None:
            raise ConfigError("the nodule task does not distil; remove `distill` from the space's compression")
        stage = stage_of(spec)
        inputs, labels = nodule_data(dataset).inputs("train", stage, spec.input_size)
        recipe = recipe or spec.training
        if stage == "classify":  # augmented when derived; the 2D affine in the loop does not apply to volumes
            recipe = recipe.model_copy(update={"augment": 0.0})
        log = train_classifier(model, inputs, labels, recipe, seed=seed, deadline=deadline, device=device,
                               stop_after=stop_after, resume=resume)
        return {"stage": stage, "examples": len(labels), "positives": int(labels.sum()),
                "epoch_losses": log.epoch_losses, "train_seconds": log.seconds, "state": log.state}

    def sample_inputs(self, spec: Spec, dataset: Dataset, count: int | None = 16, split: str = "val") -> torch.Tensor:
        return nodule_data(dataset).inputs(split, stage_of(spec), spec.input_size)[0][:count]

    def scores(self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str) -> np.ndarray:
        inputs, _ = nodule_data(dataset).inputs(split, stage_of(spec), spec.input_size)
        return probabilities(artifact)(inputs.numpy())

    def evaluate(
        self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str, *, threshold: float | None,
        target_sensitivity: float,
    ) -> dict[str, float]:
        """Patch-level metrics of one stage on its split's examples (nodules centred, non-nodule marks and random
        lung), not detection metrics: those are `evaluate_pipeline`'s."""
        scores = self.scores(artifact, spec, dataset, split)
        labels = nodule_data(dataset).inputs(split, stage_of(spec), spec.input_size)[1].numpy()
        if threshold is None:
            threshold = threshold_for_sensitivity(labels, scores, target_sensitivity)
        return binary_metrics(labels, scores, threshold)

    def evaluate_pipeline(self, detector: TwoStage, dataset: Dataset, split: str) -> Evaluation:
        """FROC of the whole pipeline on the split's scans (without a validation scan, estimated: see nodule.data)."""
        data: NoduleData = nodule_data(dataset)
        if split == "val" and data.estimated_val:
            return data.estimate(detector)
        return evaluate_scans(detector.run, data.froc_scans(split))


register_task(NoduleTask())
