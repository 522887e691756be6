"""Chest X-ray classification: normal vs abnormal, scored by AUC and by sensitivity/specificity at an operating
point chosen on the validation split (the threshold that reaches the target sensitivity)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nas.data import Dataset, load_dataset
from nas.export import Normalisation, image_inputs
from nas.tasks._task import ClassificationTask, register_task

if TYPE_CHECKING:
    import torch

NORMALISATION = Normalisation(mean=0.5, std=0.5)
"""Pre-processing a deployment must repeat: scale to [0, 1], then (x - 0.5) / 0.5, resized to the input size."""


def preprocess(images: np.ndarray, input_size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the X-ray models' inputs at `input_size`."""
    return image_inputs(images, input_size, NORMALISATION)


class XrayTask(ClassificationTask):
    name = "xray"
    description = "chest X-ray classification, normal vs abnormal (MedMNIST npz, image folders, DICOM)"
    default_space = "xray"
    normalisation = NORMALISATION

    def load_data(self, path: str | Path | None, *, positive_class: str | None = None) -> Dataset:
        return load_dataset(path, positive_class=positive_class)

    def inputs(self, dataset: Dataset, split: str, input_size: int) -> torch.Tensor:
        """Each split is resized once per input size and kept, never per epoch."""
        key = ("xray-inputs", split, input_size)
        if key not in dataset.derived:
            dataset.derived[key] = preprocess(dataset.split(split).images, input_size)
        return dataset.derived[key]  # type: ignore[return-value]


register_task(XrayTask())
