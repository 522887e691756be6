"""The task registry: a task owns its data, how a candidate is trained, and how it is scored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas._registry import Registry
from nas.data import Dataset
from nas.export import Normalisation, Predictor, onnx_predict, onnx_session
from nas.hardware import HardwareProfile, Measurement, Target
from nas.metrics import binary_metrics, threshold_for_sensitivity
from nas.spec import Spec, TrainingSpec
from nas.tasks._candidate import Candidate, CandidateScore, Stage
from nas.tasks._latency import ScanLatency
from nas.tasks._objectives import OBJECTIVES, Objective

if TYPE_CHECKING:  # torch loads when a task trains or scores, not when tasks are listed
    import torch
    from torch import nn

    from nas.hardware.runtime_choice import RuntimeChoice
    from nas.spaces import SearchSpace
    from nas.train import Distillation


class Task(ABC):
    """The plug-in (settled point 18): what a candidate is (its stages), its data, training and scoring, how its
    latency is composed, its objectives, its export bundle and its words for its figures. It knows nothing of the
    search loop: one trial path and one finalize (nas.search) call these hooks for every task."""

    name: str
    description: str
    default_space: str
    metric_names: tuple[str, ...]
    default_objectives: tuple[str, ...] = ("auc", "latency_p95")
    objectives: tuple[Objective, ...] = ()
    """Objectives only this task's metrics carry (registered with the task, see `register_task`)."""
    normalisation: Normalisation
    """What its inputs' pre-processing does, written into every export so a deployment repeats it."""
    primary_metric: str = "auc"
    """The validation metric a user ranks this task's candidates by (trial lines, `nas pick`, the report)."""
    metric_labels: dict[str, str] = {"auc": "AUC"}
    """How a metric is named to a user, where not by its key."""
    table_metrics: tuple[str, ...] = ()
    """Metrics the front table shows beside AUC and sensitivity / specificity (val and test)."""
    latency_unit: str | None = None
    """What one latency is when not one inference of one model (pareto.json's constraints say it)."""
    metrics_note: str | None = None
    """What the metrics are of, when a candidate is more than one model (written beside them in pareto.json)."""
    supports_rungs = True
    """Whether multi-fidelity rungs can train its candidates (one model per candidate)."""

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
        upstream: dict[str, tuple[Spec, nn.Module]] | None = None,
    ) -> dict[str, Any]:
        """Train `model` in place on the training split with `recipe` (default: the spec's); returns a small log.

        With `distill`, the loss mixes the labels with the teacher's logits for each training case. `stop_after`
        stops after that many epochs of the recipe's schedule (a multi-fidelity rung), leaving `state` in the log,
        which `resume` continues from. `upstream`: a multi-stage candidate's stages trained before this one, by
        name (a cascade's later stage learns from what the earlier ones pass on)."""

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

    # -- what a candidate is, how its latency is composed and what scoring it adds (the one trial path's hooks)
    def sample_candidate(self, space: SearchSpace, trial: Any, *, in_channels: int, max_epochs: int | None,
                         epochs: int | None) -> Candidate:
        """Draw a candidate from `space` on an Optuna trial; by default one model trained and compressed."""
        from nas.spaces import sample_spec

        return self.candidate_of(sample_spec(space, trial, in_channels=in_channels, num_classes=2,
                                             max_epochs=max_epochs, epochs=epochs), None)

    def candidate_of(self, spec: Spec, record: dict[str, Any] | None) -> Candidate:
        """A stored candidate rebuilt from its main spec and its `record` (a trial result's `spec` and `pipeline`)."""
        return Candidate((Stage("model", spec),))

    def with_stage_spec(self, candidate: Candidate, stage: str, spec: Spec) -> Candidate:
        """The candidate with one stage's spec replaced (once its pruned channel counts are planned)."""
        return candidate.with_spec(stage, spec)

    def summary(self, candidate: Candidate) -> str:
        return candidate.main.spec.summary()

    def write_candidate(self, candidate: Candidate, folder: Path) -> None:
        """What a trial folder holds to rebuild the candidate."""
        (folder / "spec.json").write_text(candidate.main.spec.to_json())

    def compose_latency(self, candidate: Candidate, dataset: Dataset, measured: dict[str, Measurement],
                        runs: dict[str, float] | None = None) -> tuple[Measurement, ScanLatency | None]:
        """A whole candidate's latency from its stages' measurements (`runs`: runs per case seen while scoring;
        None in phase 1, before any). One model: its own measurement."""
        return measured[candidate.main.name], None

    def budget_what(self, candidate: Candidate) -> str:
        """What phase 1's budget is judged on, in a user's words."""
        return "latency"

    def score_candidate(self, candidate: Candidate, artifacts: dict[str, Path | Predictor], dataset: Dataset,
                        split: str) -> CandidateScore | None:
        """What scoring the whole candidate adds to its main stage's metrics; None for one model."""
        return None

    def describe_data(self, dataset: Dataset) -> dict[str, Any]:
        return dataset.describe()

    def artifacts(self, folder: Path) -> dict[str, str]:
        """pareto.json's `artifacts` of a member kept in `folder`."""
        return {"onnx": str(folder / "model.onnx"), "weights": str(folder / "model.pt")}

    def front_extras(self, target: Target, candidate: Candidate | None, folder: Path | None, scan_ms: float | None,
                     test: CandidateScore | None, dataset: Dataset, say: Callable[[str], None],
                     runtime_choice: RuntimeChoice | None = None) -> dict[str, Any]:
        """What pareto.json adds for this task, given the knee member (None when the front is empty): its
        candidate, folder, latency p50, test scoring and the runtime its main stage ships on."""
        return {}

    def export_bundle(self, open_trial: Callable[[], tuple[Path, Any, Task, Dataset]], out: Path
                      ) -> dict[str, Any] | None:
        """Write a trial's deployable folder to `out` and return its model card; `open_trial` gives the trial's
        folder, result, task and data (read only when needed). None: the one-model bundle, which the layer above
        writes (nas.report.package: calibration, referral band, model card)."""
        return None

    # -- a task's words for its figures
    def label(self, metric: str) -> str:
        return self.metric_labels.get(metric, metric)

    def describe_metrics(self, metrics: dict[str, Any]) -> str:
        """One short line of a candidate's figures, for trial lines and pick reasons."""
        return (f"{self.label('auc')} {metrics['auc']:.4f}, sens {metrics['sensitivity']:.3f} / spec "
                f"{metrics['specificity']:.3f}")

    def describe_latency(self, m: Measurement) -> str:
        return m.short()

    def input_reader(self, io: dict[str, Any]) -> Callable[[Path], np.ndarray] | None:
        """How `nas predict` turns one file into an exported model's input (C, ...), given the export's io.json;
        None: a picture or DICOM image, resized and normalised as io.json says."""
        return None


class ClassificationTask(Task):
    """A binary classifier of one input per case (the positive class is 1): a new such task says how a split
    becomes model inputs (`inputs`) and how its data loads; training and scoring are shared."""

    metric_names = ("auc", "accuracy", "sensitivity", "specificity", "threshold")
    augments = True
    """Whether the training loop's 2D affine augmentation applies (not to volumes)."""

    @abstractmethod
    def inputs(self, dataset: Dataset, split: str, input_size: int) -> torch.Tensor:
        """Every pre-processed input of a split, in order, at `input_size` (kept in `dataset.derived`)."""

    def train(
        self, model: nn.Module, spec: Spec, dataset: Dataset, *, seed: int, deadline: float | None,
        recipe: TrainingSpec | None = None, distill: Distillation | None = None, device: str = "cpu",
        stop_after: int | None = None, resume: dict[str, Any] | None = None,
        upstream: dict[str, tuple[Spec, nn.Module]] | None = None,
    ) -> dict[str, Any]:
        recipe = recipe or spec.training
        if not self.augments:
            recipe = recipe.model_copy(update={"augment": 0.0})
        import torch

        from nas.train import train_classifier

        labels = torch.from_numpy(dataset.split("train").labels)
        log = train_classifier(model, self.inputs(dataset, "train", spec.input_size), labels, recipe, seed=seed,
                               deadline=deadline, distill=distill, device=device, stop_after=stop_after,
                               resume=resume)
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
