"""Chest X-ray classification: normal vs abnormal, scored by AUC and by sensitivity/specificity at an operating
point chosen on the validation split (the threshold that reaches the target sensitivity)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import Dataset, load_dataset
from nas.export import Normalisation, Predictor, image_inputs, onnx_predict, onnx_session
from nas.metrics import binary_metrics, threshold_for_sensitivity
from nas.spec import Spec, TrainingSpec
from nas.tasks._task import Task, register_task
from nas.train import Distillation, train_classifier

NORMALISATION = Normalisation(mean=0.5, std=0.5)
"""Pre-processing a deployment must repeat: scale to [0, 1], then (x - 0.5) / 0.5, resized to the input size."""


def preprocess(images: np.ndarray, input_size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the X-ray models' inputs at `input_size`."""
    return image_inputs(images, input_size, NORMALISATION)


class XrayTask(Task):
    name = "xray"
    description = "chest X-ray classification, normal vs abnormal (MedMNIST npz, image folders, DICOM)"
    default_space = "xray"
    metric_names = ("auc", "accuracy", "sensitivity", "specificity", "threshold")
    normalisation = NORMALISATION

    def load_data(self, path: str | Path | None, *, positive_class: str | None = None) -> Dataset:
        return load_dataset(path, positive_class=positive_class)

    def inputs(self, dataset: Dataset, split: str, input_size: int) -> torch.Tensor:
        """Each split is resized once per input size and kept, never per epoch."""
        key = ("xray-inputs", split, input_size)
        if key not in dataset.derived:
            dataset.derived[key] = preprocess(dataset.split(split).images, input_size)
        return dataset.derived[key]  # type: ignore[return-value]

    def train(
        self, model: nn.Module, spec: Spec, dataset: Dataset, *, seed: int, deadline: float | None,
        recipe: TrainingSpec | None = None, distill: Distillation | None = None, device: str = "cpu",
        stop_after: int | None = None, resume: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        images = self.inputs(dataset, "train", spec.input_size)
        labels = torch.from_numpy(dataset.split("train").labels)
        log = train_classifier(model, images, labels, recipe or spec.training, seed=seed, deadline=deadline,
                               distill=distill, device=device, stop_after=stop_after, resume=resume)
        return {"epoch_losses": log.epoch_losses, "train_seconds": log.seconds, "state": log.state}

    def sample_inputs(self, spec: Spec, dataset: Dataset, count: int | None = 16, split: str = "val") -> torch.Tensor:
        return self.inputs(dataset, split, spec.input_size)[:count]

    def scores(self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str) -> np.ndarray:
        inputs = self.inputs(dataset, split, spec.input_size).numpy()
        logits = onnx_predict(onnx_session(artifact), inputs) if isinstance(artifact, Path) else artifact(inputs)
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return probs[:, 1]

    def evaluate(
        self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str, *, threshold: float | None,
        target_sensitivity: float,
    ) -> dict[str, float]:
        scores = self.scores(artifact, spec, dataset, split)
        labels = dataset.split(split).labels
        if threshold is None:
            threshold = threshold_for_sensitivity(labels, scores, target_sensitivity)
        return binary_metrics(labels, scores, threshold)


register_task(XrayTask())
