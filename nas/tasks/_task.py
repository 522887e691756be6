"""The task registry: a task owns its data, how a candidate is trained, and how it is scored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._registry import Registry
from nas.data import Dataset
from nas.export import Normalisation, Predictor
from nas.hardware import HardwareProfile
from nas.spec import Spec, TrainingSpec
from nas.tasks._objectives import OBJECTIVES, Objective
from nas.train import Distillation


class Task(ABC):
    """Knows nothing of Optuna: it trains a spec and scores a deployed artifact on a split."""

    name: str
    description: str
    default_space: str
    metric_names: tuple[str, ...]
    default_objectives: tuple[str, ...] = ("auc", "latency_p95")
    objectives: tuple[Objective, ...] = ()
    normalisation: Normalisation
    """What its inputs' pre-processing does, written into every export so a deployment repeats it."""
    """Objectives only this task's metrics carry (registered with the task, see `register_task`)."""

    def latency_budget_ms(self, profile: HardwareProfile) -> float | None:
        """The budget a search applies when --max-latency-ms is not given: the profile's, per inference."""
        return profile.budgets.max_latency_ms

    @abstractmethod
    def load_data(self, path: str | Path | None, *, positive_class: str | None = None) -> Dataset: ...

    @abstractmethod
    def train(
        self, model: nn.Module, spec: Spec, dataset: Dataset, *, seed: int, deadline: float | None,
        recipe: TrainingSpec | None = None, distill: Distillation | None = None, device: str = "cpu",
        stop_after: int | None = None, resume: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Train `model` in place on the training split with `recipe` (default: the spec's); returns a small log.

        With `distill`, the loss mixes the labels with the teacher's logits for each training case. `stop_after`
        stops after that many epochs of the recipe's schedule (a multi-fidelity rung), leaving `state` in the log,
        which `resume` continues from."""

    @abstractmethod
    def sample_inputs(self, spec: Spec, dataset: Dataset, count: int | None = 16, split: str = "val") -> torch.Tensor:
        """The first `count` (None: all) pre-processed inputs of a split, in order: to check an export, calibrate
        INT8 (train), or compute a teacher's logits."""

    @abstractmethod
    def scores(self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str) -> np.ndarray:
        """The deployed artifact's positive-class score for every case of `split`: an ONNX file, or a predictor
        for artifacts a runtime builds itself (fp16)."""

    @abstractmethod
    def evaluate(
        self, artifact: Path | Predictor, spec: Spec, dataset: Dataset, split: str, *, threshold: float | None,
        target_sensitivity: float,
    ) -> dict[str, float]:
        """Metrics of the deployed ONNX artifact on `split`; `threshold` None means choose it on this split."""


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    """The one place a task plugs in: the task and the objectives its metrics add."""
    TASKS.register(task.name, task)
    for objective in task.objectives:
        OBJECTIVES.register(objective.name, objective)
    return task


def get_task(name: str) -> Task:
    return TASKS.get(name)


def list_tasks() -> list[str]:
    return TASKS.names()
