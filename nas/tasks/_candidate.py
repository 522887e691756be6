"""What a task says a candidate is: its stages (each a model `Spec`), where each is kept, the batch each runs at,
and which are compressed. The one trial path (nas.search.trial) runs every stage the same way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.hardware import Measurement, Target
from nas.spec import Spec

__all__ = ["Candidate", "CandidateScore", "Stage", "measure_at_batch", "target_at_batch"]


@dataclass(frozen=True)
class Stage:
    """One model of a candidate."""

    name: str
    spec: Spec
    folder: str = ""
    """Its sub-folder of the trial folder ('' : the trial folder itself, as for a one-model candidate)."""
    batch: int | None = None
    """The batch it is measured at; None: the profile's own (one inference)."""
    compressed: bool = True
    """Whether the spec's compression (pruning, fine-tuning, quantization, the runtime choice) applies to it."""


@dataclass(frozen=True)
class Candidate:
    """A candidate's stages in the order they run; the last compressed one is its searched model (`main`)."""

    stages: tuple[Stage, ...]
    record: dict[str, Any] | None = None
    """The whole candidate as plain data when it is more than one model (the nodule task's pipeline spec)."""

    @property
    def main(self) -> Stage:
        return [s for s in self.stages if s.compressed][-1]

    def with_spec(self, name: str, spec: Spec) -> Candidate:
        return dataclasses.replace(self, stages=tuple(dataclasses.replace(s, spec=spec) if s.name == name else s
                                                      for s in self.stages))

    def folder(self, trial_dir: Path, stage: Stage) -> Path:
        return trial_dir / stage.folder if stage.folder else trial_dir


@dataclass
class CandidateScore:
    """What scoring a whole candidate adds to its main stage's metrics (the nodule task: the pipeline's FROC)."""

    metrics: dict[str, Any]
    runs: dict[str, float] = field(default_factory=dict)
    """Stage name -> runs per case really seen while scoring (candidates that passed stage 1), for the latency."""
    flags: list[str] = field(default_factory=list)
    detail: Any = None
    """The task's own record of the scoring (kept for what finalize adds, e.g. the dense baseline)."""


def target_at_batch(target: Target, batch: int | None) -> Target:
    """`target` measuring at `batch` (the profile's own batch is for single-image latency)."""
    if batch is None or batch == target.profile.batch:
        return target
    return dataclasses.replace(target, profile=target.profile.model_copy(update={"batch": batch}))


def measure_at_batch(target: Target, onnx: Path, precision: str, input_shape: tuple[int, ...], batch: int | None,
                     model: Any = None) -> Measurement:
    """The target's measurement at `batch`."""
    return target_at_batch(target, batch).measure(onnx, precision, input_shape, model)  # type: ignore[arg-type]

