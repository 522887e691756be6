"""The nodule task's candidate: two models and the hand-off between them, drawn from one search-space YAML.

A nodule space is an ordinary `SearchSpace` file read two ways: its 2D families are first-stage screeners (on
`input_size`-pixel tiles of 3-slice slabs, 1 mm per pixel), its 3D families second-stage patch classifiers; each 3D
family's block also declares `patch_size`, `candidates`, `screen_threshold` and `views` (see nas.models.volume).
`training` is both stages' recipe, `classify_training` overrides knobs of it for the second stage; `compression`
applies to the second stage, the one that runs per candidate in 3D.
"""

from __future__ import annotations

from typing import Any

import optuna
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nas.errors import ConfigError
from nas.models import get_family
from nas.models.volume import PATCH_PARAMS
from nas.spaces import TRAINING_DEFAULTS, SearchSpace, draw, sample_compression
from nas.spec import CompressionSpec, Spec, TrainingSpec
from nas.tasks.nodule.volume import SLAB_OFFSETS, VIEWS

__all__ = ["NoduleSpec", "sample_nodule_spec", "stages"]


class NoduleSpec(BaseModel):
    """Everything needed to rebuild a two-stage candidate: both model specs and the hand-off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    screen: Spec
    """First stage: a 2D classifier of (3, input_size, input_size) slab tiles."""
    classify: Spec
    """Second stage: a 3D classifier of (1, P, P, P) patches, P = classify.input_size."""
    candidates: int = Field(ge=1, description="at most this many stage-1 candidates go to stage 2 per scan")
    screen_threshold: float = Field(ge=0, le=1, description="stage-1 score a tile needs to become a candidate")
    views: int = Field(1, ge=1, le=len(VIEWS), description="stage 2 scores each candidate as the mean over this many "
                       "symmetric views of its patch (test-time augmentation, one batch of views per candidate)")

    @field_validator("classify")
    @classmethod
    def _volume(cls, classify: Spec) -> Spec:
        """Pipelines stored before specs carried `spatial_dims` read as 2D; the second stage is a volume model."""
        return classify if classify.spatial_dims == 3 else classify.model_copy(update={"spatial_dims": 3})

    @property
    def patch_size(self) -> int:
        return self.classify.input_size

    def summary(self) -> str:
        views = f" x {self.views} views" if self.views > 1 else ""
        return (f"screen {self.screen.summary()} | classify {self.classify.summary()}{views} | "
                f"top {self.candidates} over {self.screen_threshold:.2f}")


def stages(space: SearchSpace) -> tuple[list[str], list[str]]:
    """The space's first-stage (2D) and second-stage (3D) families; both must be present."""
    first = [f for f in space.families if get_family(f).spatial_dims == 2]
    second = [f for f in space.families if get_family(f).spatial_dims == 3]
    if not first or not second:
        missing = "a 2D screener family (dsconv, mobilenetv3, ...)" if not first else "a 3D family (dsconv3d, resnet3d)"
        raise ConfigError(f"{space.path}: a nodule space needs {missing} under families")
    return first, second


def _arch(trial: optuna.Trial, prefix: str, family: str, declared: dict[str, Any]) -> dict[str, Any]:
    def p(name: str, index: int | None = None) -> Any:
        return draw(trial, f"{prefix}.{family}.{name}" + ("" if index is None else f"[{index}]"), declared[name])

    return get_family(family).sample(p)


def sample_nodule_spec(space: SearchSpace, trial: optuna.Trial, *, max_epochs: int | None = None) -> NoduleSpec:
    """Draw both stages, the hand-off and the training recipes. Parameter names are stable:
    `screen.family`, `screen.input_size`, `classify.family`, `classify.resnet3d.patch_size`, `classify.resnet3d.views`,
    `lr`, `classify.epochs` (a `classify_training` knob), `quant`. `max_epochs` caps both stages' epochs."""
    first, second = stages(space)
    screen_family = trial.suggest_categorical("screen.family", first)
    screen_arch = _arch(trial, "screen", screen_family, space.families[screen_family])
    tile = int(draw(trial, "screen.input_size", space.input_size))
    classify_family = trial.suggest_categorical("classify.family", second)
    declared = space.families[classify_family]
    classify_arch = _arch(trial, "classify", classify_family, declared)
    hand_off = {name: draw(trial, f"classify.{classify_family}.{name}", declared[name]) for name in PATCH_PARAMS}
    training = {**TRAINING_DEFAULTS, **{k: draw(trial, k, v) for k, v in space.training.items()}}
    classify_training = {**training, **{k: draw(trial, f"classify.{k}", v) for k, v in space.classify_training.items()}}
    if max_epochs is not None:
        for recipe in (training, classify_training):
            recipe["epochs"] = min(int(recipe["epochs"]), max_epochs)
    try:
        screen = Spec(family=screen_family, arch=screen_arch, input_size=tile, in_channels=len(SLAB_OFFSETS),
                      num_classes=2, training=TrainingSpec(**training))
        # `augment` > 0: the training loop draws each patch's flips and in-plane turns every step
        classify = Spec(family=classify_family, arch=classify_arch, input_size=int(hand_off["patch_size"]),
                        in_channels=1, num_classes=2, training=TrainingSpec(**classify_training), spatial_dims=3,
                        compression=CompressionSpec(**sample_compression(space, trial)))
        return NoduleSpec(screen=screen, classify=classify, candidates=int(hand_off["candidates"]),
                          screen_threshold=float(hand_off["screen_threshold"]), views=int(hand_off["views"]))
    except ValueError as exc:
        raise ConfigError(f"{space.path}: cannot build a candidate: {exc}") from None
