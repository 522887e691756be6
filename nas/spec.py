"""A candidate model as plain data: everything needed to rebuild, train and deploy it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainingSpec", "CompressionSpec", "Spec", "Precision", "CalibrationMethod"]

Precision = Literal["fp32", "fp16", "int8"]


class TrainingSpec(BaseModel):
    """The training recipe; baselines and candidates share its defaults so comparisons are fair."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    epochs: int = Field(ge=1)
    augment: float = Field(ge=0, le=1, description="augmentation strength, 0 = none")
    batch_size: int = Field(default=128, ge=1)


CalibrationMethod = Literal["minmax", "entropy", "percentile"]


class CompressionSpec(BaseModel):
    """What is done to the trained model before it ships: prune, fine-tune (distilling), quantize."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prune_ratio: float = Field(default=0.0, ge=0, lt=1)
    channels: dict[str, int] = Field(
        default_factory=dict, description="output channels of every pruned layer, fixed by prune_ratio up front")
    finetune_epochs: int = Field(default=2, ge=0, description="epochs of fine-tuning after pruning")
    distill: bool = False
    temperature: float = Field(default=4.0, gt=0, description="distillation softmax temperature")
    alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the soft-target loss against labels")
    quant: Precision = "fp32"
    calibration: CalibrationMethod = "minmax"

    def summary(self) -> str:
        parts = [f"prune {self.prune_ratio:.2f}"] if self.prune_ratio else []
        if self.distill:
            parts.append(f"distil T={self.temperature:g} a={self.alpha:.2f}")
        return " ".join(parts + [self.quant])


class Spec(BaseModel):
    """One candidate: family + resolved architecture + input + training + compression."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    arch: dict[str, Any]
    input_size: int = Field(ge=8)
    in_channels: int = Field(ge=1)
    num_classes: int = Field(ge=2)
    training: TrainingSpec
    compression: CompressionSpec = CompressionSpec()
    baseline: str | None = Field(default=None, description="the baseline's name when this is one")
    spatial_dims: Literal[2, 3] = Field(default=2, description="2: images, 3: volumes (MONAI's spatial_dims)")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) for an image, (C, D, H, W) for a volume: `input_size` on every spatial axis."""
        return (self.in_channels, *(self.input_size,) * self.spatial_dims)

    def summary(self) -> str:
        """A one-line description for tables and hover text."""
        keys = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"  # no 17-digit floats
                         for k, v in self.arch.items() if k != "stages")
        stages = self.arch.get("stages")
        if stages:
            keys += ", stages=" + "/".join(f"{s['width']}x{s['depth']}s{s['stride']}k{s['kernel']}" for s in stages)
        name = f"{self.baseline} " if self.baseline else ""
        return f"{name}[{self.family}] {keys} @{self.input_size}px {self.compression.summary()}"

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        return cls.model_validate(json.loads(text))

    @classmethod
    def load(cls, path: Path) -> Spec:
        return cls.from_json(Path(path).read_text())
