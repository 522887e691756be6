"""Search-space YAML: declared parameters, their validation, and sampling a `Spec` from an Optuna trial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import optuna
from pydantic import (
    BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator,
)

from nas import _yaml
from nas.errors import ConfigError, did_you_mean, shown
from nas.models import get_family, list_families
from nas.models._family import Bounds
from nas.spaces._fidelity import Fidelity
from nas.spec import CalibrationMethod, CompressionSpec, Precision, Spec, TrainingSpec

Scalar = Union[bool, int, float, str]

TRAINING_PARAMS = ("lr", "weight_decay", "epochs", "augment", "batch_size")
TRAINING_DEFAULTS: dict[str, Any] = {"batch_size": 128}
COMPRESSION_PARAMS = ("prune_ratio", "finetune_epochs", "distill", "temperature", "alpha", "quant", "calibration")
COMPRESSION_DEFAULTS = {name: field.default for name, field in CompressionSpec.model_fields.items()
                        if name in COMPRESSION_PARAMS}
DRAWN_WHEN: dict[str, Callable[[dict[str, Any]], bool]] = {
    "finetune_epochs": lambda drawn: bool(drawn.get("prune_ratio")),
    "temperature": lambda drawn: bool(drawn.get("distill")),
    "alpha": lambda drawn: bool(drawn.get("distill")),
}
"""Knobs that only matter given another, so the sampler never learns from values that had no effect."""
INPUT_SIZE_BOUNDS = Bounds(int, 8, 4096)
TRAINING_BOUNDS = {
    "lr": Bounds(float, 0, 10, low_open=True), "weight_decay": Bounds(float, 0, 1), "epochs": Bounds(int, 1, 10_000),
    "augment": Bounds(float, 0, 1), "batch_size": Bounds(int, 1, 65_536)}
COMPRESSION_BOUNDS = {
    "prune_ratio": Bounds(float, 0, 1, high_open=True), "finetune_epochs": Bounds(int, 0, 1000),
    "distill": Bounds(bool), "temperature": Bounds(float, 0.1, 100), "alpha": Bounds(float, 0, 1),
    "quant": Bounds(str, choices=get_args(Precision)), "calibration": Bounds(str, choices=get_args(CalibrationMethod))}


class Distribution(BaseModel):
    """A searched parameter: `choices`, or a `low`..`high` range (integer when both ends are integers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choices: list[Scalar] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    default: Scalar | None = None

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either `choices` or `low`/`high`, not both")
            if not self.choices:
                raise ValueError("`choices` is empty")
            if self.default is not None and self.default not in self.choices:
                raise ValueError(f"default {self.default!r} is not one of the choices {self.choices}")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a parameter needs `choices`, or both `low` and `high`, or a plain fixed value")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low {self.low}")
        if self.default is not None and not (self.low <= self.default <= self.high):  # type: ignore[operator]
            raise ValueError(f"default {self.default!r} is outside [{self.low}, {self.high}]")
        return self

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high  # type: ignore[operator]

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)  # type: ignore[arg-type]


def _param_kind(value: Any) -> str:
    return "range" if isinstance(value, (dict, Distribution)) else "fixed"


# Tagged, so a bad range reports only the range's error, not one line per scalar type it also failed.
Param = Annotated[
    Union[Annotated[Distribution, Tag("range")], Annotated[Scalar, Tag("fixed")]], Discriminator(_param_kind)
]


def draw(trial: optuna.Trial, name: str, param: Param) -> Any:
    """A fixed value as is; a distribution through the trial, so the sampler sees it."""
    return param.suggest(trial, name) if isinstance(param, Distribution) else param


def default_of(param: Param) -> Any:
    return param.default if isinstance(param, Distribution) else param


class Baseline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    family: str
    arch: dict[str, Any]
    input_size: int | Literal["native"] | None = None
    """`native`: the data's own resolution (a baseline at 224x224 on 224-px images, 28x28 on MedMNIST)."""

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        return _check_family(value)


def _check_family(name: str) -> str:
    if name not in list_families():
        raise ValueError(f"unknown family {name!r}{did_you_mean(name, list_families())}; registered: "
                         + ", ".join(list_families()))
    return name


def _check_keys(where: str, given: dict[str, Any], allowed: tuple[str, ...], optional: dict[str, Any]) -> None:
    for key in given:
        if key not in allowed:
            raise ValueError(f"{where}unknown parameter {key!r}{did_you_mean(key, allowed)}; "
                             f"allowed: {', '.join(allowed)}")
    missing = [k for k in allowed if k not in given and k not in optional]
    if missing:
        raise ValueError(f"{where}missing parameter(s) {', '.join(missing)}")


def _check_bounds(where: str, param: Param, bounds: Bounds) -> None:
    """Every value a parameter can take (a fixed value, each choice, both ends of a range) is within bounds."""
    if isinstance(param, Distribution) and param.choices is None:
        if not bounds.ranged:
            raise ValueError(f"{where}a low/high range is not allowed; give {bounds.describe()}, or choices of them")
        values: list[Any] = [param.low, param.high]
    else:
        values = list(param.choices) if isinstance(param, Distribution) else [param]  # type: ignore[arg-type]
    for value in values:
        if not bounds.allows(value):
            raise ValueError(f"{where}{shown(value)} is not allowed; expected {bounds.describe()}")


def _check_training_knobs(training: dict[str, Param], optional: dict[str, Any]) -> dict[str, Param]:
    _check_keys("", training, TRAINING_PARAMS, optional)
    for key, param in training.items():
        _check_bounds(f"{key}: ", param, TRAINING_BOUNDS[key])
    return training


class StartPoint(BaseModel):
    """A known-good candidate the search tries first (Optuna's enqueue_trial): unlike a baseline it is an ordinary
    candidate of the space, drawn with every parameter fixed, compressed and promoted like any other."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: dict[str, Any] = Field(min_length=1)
    """Optuna parameter names as a trial records them (`screen.family`, `classify.dsconv3d.stage_width[0]`, `lr`)."""


class SearchSpace(BaseModel):
    """One search_spaces/*.yaml file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    task: str
    description: str = ""
    input_size: Param
    families: dict[str, dict[str, Param]] = Field(min_length=1)
    training: dict[str, Param]
    classify_training: dict[str, Param] = Field(default_factory=dict)
    """Two-stage tasks (nodule): the second stage's own values of `training` knobs, drawn as `classify.<knob>`;
    the rest of its recipe is `training`'s. A 3D classifier and a 2D screener need not learn alike."""
    compression: dict[str, Param] = Field(default_factory=dict)
    baselines: list[Baseline] = Field(default_factory=list)
    start_points: list[StartPoint] = Field(default_factory=list)
    """Enqueued when a study is created, after the baselines; checked against the task's sampler (check_start_point)."""
    fidelity: Fidelity | None = None
    """Multi-fidelity rungs (epochs) for this space's searches; flags override it, `--rungs none` turns it off."""
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("input_size")
    @classmethod
    def _check_input_size(cls, input_size: Param) -> Param:
        _check_bounds("", input_size, INPUT_SIZE_BOUNDS)
        return input_size

    @field_validator("families")
    @classmethod
    def _check_families(cls, families: dict[str, dict[str, Param]]) -> dict[str, dict[str, Param]]:
        for name, params in families.items():
            family = get_family(_check_family(name))
            _check_keys(f"{name}: ", params, family.params, {})
            for key, param in params.items():
                if key in family.bounds:
                    _check_bounds(f"{name}.{key}: ", param, family.bounds[key])
        return families

    @field_validator("training")
    @classmethod
    def _check_training(cls, training: dict[str, Param]) -> dict[str, Param]:
        return _check_training_knobs(training, TRAINING_DEFAULTS)

    @field_validator("classify_training")
    @classmethod
    def _check_classify_training(cls, training: dict[str, Param]) -> dict[str, Param]:
        return _check_training_knobs(training, dict.fromkeys(TRAINING_PARAMS))  # overrides: every knob optional

    @field_validator("compression")
    @classmethod
    def _check_compression(cls, compression: dict[str, Param]) -> dict[str, Param]:
        _check_keys("", compression, COMPRESSION_PARAMS, COMPRESSION_DEFAULTS)
        for key, param in compression.items():
            _check_bounds(f"{key}: ", param, COMPRESSION_BOUNDS[key])
        return compression

    @model_validator(mode="after")
    def _check_baseline_defaults(self, info: ValidationInfo) -> SearchSpace:
        if self.baselines:
            for key, param in self.training.items():
                if default_of(param) is None:
                    raise ValueError(f"training.{key}: a searched parameter needs a `default` "
                                     "(the recipe baselines are trained with)")
            if self.baseline_input_size() is None and any(b.input_size is None for b in self.baselines):
                raise ValueError("input_size: give a `default`, or an input_size on every baseline")
        return self

    def baseline(self, name: str) -> Baseline:
        for b in self.baselines:
            if b.name == name:
                return b
        raise ConfigError(f"{self.path}: no baseline named {name!r}; baselines: "
                          + ", ".join(b.name for b in self.baselines))

    def baseline_input_size(self) -> int | None:
        value = default_of(self.input_size)
        return int(value) if value is not None else None

    def training_defaults(self) -> dict[str, Any]:
        return {**TRAINING_DEFAULTS, **{k: default_of(v) for k, v in self.training.items()}}


def load_space(name_or_path: str) -> SearchSpace:
    path = _yaml.find("search space", name_or_path, "search_spaces")
    space = _yaml.load_model(SearchSpace, path)
    return space.model_copy(update={"path": path})


def list_spaces() -> list[SearchSpace]:
    return [load_space(str(path)) for path in _yaml.available("search_spaces").values()]


def baseline_params(space: SearchSpace, baseline: Baseline) -> dict[str, Any]:
    """The parameters a baseline trial is enqueued with: the shared dimensions (input size, training recipe,
    and the family when the space searches it), so samplers see baselines as points of the same space."""
    params: dict[str, Any] = {}
    if baseline.family in space.families:
        params["family"] = baseline.family
    input_size = baseline.input_size or space.baseline_input_size()
    if isinstance(space.input_size, Distribution) and space.input_size.contains(input_size):
        params["input_size"] = input_size
    for key, param in space.training.items():
        if isinstance(param, Distribution):
            params[key] = param.default
    return params


def sample_spec(
    space: SearchSpace, trial: optuna.Trial, *, in_channels: int, num_classes: int, max_epochs: int | None = None,
    epochs: int | None = None,
) -> Spec:
    """Draw one candidate, or build the baseline the trial was enqueued as (user attr `baseline`).

    Parameter names are stable: `family`, `dsconv.stage_width[1]`, `input_size`, `lr`. `epochs` fixes a
    candidate's epoch count (multi-fidelity: the top rung), and the `epochs` knob is then not drawn, since it
    would have no effect the sampler could learn from.
    """
    if space.classify_training:
        raise ConfigError(f"{space.path}: classify_training is for two-stage tasks (nodule); task {space.task!r} "
                          "trains one model: move its knobs into training")
    baseline = space.baseline(trial.user_attrs["baseline"]) if "baseline" in trial.user_attrs else None
    if baseline is None or baseline.family in space.families:
        family = trial.suggest_categorical("family", list(space.families))
    if baseline is None:
        declared = space.families[family]

        def p(name: str, index: int | None = None) -> Any:
            return draw(trial, f"{family}.{name}" + ("" if index is None else f"[{index}]"), declared[name])

        arch = get_family(family).sample(p)
        input_size = int(draw(trial, "input_size", space.input_size))
    else:
        family, arch = baseline.family, baseline.arch
        fixed = baseline.input_size or space.baseline_input_size()
        contained = isinstance(space.input_size, Distribution) and space.input_size.contains(fixed)
        input_size = int(draw(trial, "input_size", space.input_size) if contained else fixed)  # type: ignore[arg-type]
    pinned = {"epochs": epochs} if epochs is not None and baseline is None else {}
    training = {k: pinned[k] if k in pinned else draw(trial, k, v) for k, v in space.training.items()}
    compression = {} if baseline else sample_compression(space, trial)
    return _make_spec(space, family, arch, input_size, training, compression, in_channels, num_classes,
                      max_epochs, baseline=baseline.name if baseline else None)


def sample_compression(space: SearchSpace, trial: optuna.Trial) -> dict[str, Any]:
    """Compression knobs, drawn jointly with the architecture; baselines ship uncompressed (the yardstick)."""
    drawn: dict[str, Any] = {}
    for key in COMPRESSION_PARAMS:  # in this order, so what a knob depends on is drawn before it
        if key in space.compression and DRAWN_WHEN.get(key, lambda _: True)(drawn):
            drawn[key] = draw(trial, key, space.compression[key])
    return drawn


def for_precisions(space: SearchSpace, precisions: list[str], profile: str) -> SearchSpace:
    """The space as a profile can run it: `quant` offers only the precisions the profile's runtime has.

    Settled point 3: a space that asks only for precisions the profile lacks is an error naming them, never a
    silent fallback; a space offering several keeps those the profile runs.
    """
    quant = space.compression.get("quant", "fp32")
    offered = quant.choices if isinstance(quant, Distribution) else [quant]
    kept = [p for p in offered if p in precisions]  # type: ignore[union-attr]
    if not kept:
        raise ConfigError(f"{space.path}: compression.quant: {', '.join(map(str, offered))} "  # type: ignore[arg-type]
                          f"cannot run on hardware profile {profile!r}, whose precisions are "
                          f"{', '.join(precisions)}; use one of those")
    if kept == offered:
        return space
    restricted = Distribution(choices=kept) if len(kept) > 1 else kept[0]
    return space.model_copy(update={"compression": {**space.compression, "quant": restricted}})


def for_data(space: SearchSpace, image_size: tuple[int, int]) -> SearchSpace:
    """The space as this data allows: searched input sizes never above the images' own size (upsampling adds
    no information, only cost), and `native` baselines at that size."""
    native = min(image_size)
    param = space.input_size
    if isinstance(param, Distribution) and param.choices is not None:
        kept = [c for c in param.choices if int(c) <= native]  # type: ignore[arg-type]
        if not kept:
            raise ConfigError(f"{space.path}: input_size: every choice ({', '.join(map(str, param.choices))}) is "
                              f"above the data's {native} px; add a choice of at most {native}")
        default = param.default if param.default in kept else None
        param = Distribution(choices=kept, default=default) if len(kept) > 1 else kept[0]
    elif isinstance(param, Distribution) and param.high is not None and param.high > native:
        if param.low is not None and param.low > native:
            raise ConfigError(f"{space.path}: input_size: the range starts at {param.low}, above the data's "
                              f"{native} px")
        param = param.model_copy(update={"high": native})
    baselines = [b.model_copy(update={"input_size": native}) if b.input_size == "native" else b
                 for b in space.baselines]
    return space.model_copy(update={"input_size": param, "baselines": baselines})


def _make_spec(
    space: SearchSpace, family: str, arch: dict[str, Any], input_size: int, training: dict[str, Any],
    compression: dict[str, Any], in_channels: int, num_classes: int, max_epochs: int | None, baseline: str | None,
) -> Spec:
    training = {**TRAINING_DEFAULTS, **training}
    if max_epochs is not None:
        training["epochs"] = min(int(training["epochs"]), max_epochs)
    try:
        return Spec(
            family=family, arch=arch, input_size=input_size, in_channels=in_channels, num_classes=num_classes,
            training=TrainingSpec(**training), compression=CompressionSpec(**compression), baseline=baseline,
            spatial_dims=get_family(family).spatial_dims,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise ConfigError(f"{space.path}: cannot build a candidate: {exc}") from None


def check_start_point(space: SearchSpace, point: StartPoint, sample: Callable[[Any], object]) -> None:
    """Draw `point` once through the task's own sampler (`sample`): every parameter it names must be one the
    candidate draws and within its distribution, and together they must fix the whole candidate."""
    where = f"{space.path}: start_points {point.name!r}: "
    study = optuna.create_study(directions=["minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(point.params)
    trial = _FixedValuesChecked(study.ask(), point.params, where)
    try:
        sample(trial)
    except ValueError as exc:
        raise ConfigError(f"{where}{exc}") from None
    drawn = trial.distributions
    for name in point.params:
        if name not in drawn:
            raise ConfigError(f"{where}{name!r} is not a parameter this candidate draws"
                              f"{did_you_mean(name, list(drawn))} (names as a trial of it records them)")
    unfixed = [name for name in drawn if name not in point.params]
    if unfixed:
        raise ConfigError(f"{where}fix every parameter, so the point is the same in every study; missing: "
                          + ", ".join(unfixed))


class _FixedValuesChecked:
    """An Optuna trial whose suggest calls first check the point's fixed value against what the space offers
    (Optuna itself would take an out-of-range number with a warning, and refuse a choice without its name)."""

    def __init__(self, trial: optuna.Trial, params: dict[str, Any], where: str) -> None:
        self._trial, self._params, self._where = trial, params, where

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if name in self._params and self._params[name] not in choices:
            raise ConfigError(f"{self._where}{name} = {shown(self._params[name])} is not one of the space's "
                              f"choices {list(choices)}")
        return self._trial.suggest_categorical(name, choices)

    def suggest_float(self, name: str, low: float, high: float, **kwargs: Any) -> float:
        self._within(name, low, high)
        return self._trial.suggest_float(name, low, high, **kwargs)

    def suggest_int(self, name: str, low: int, high: int, **kwargs: Any) -> int:
        self._within(name, low, high)
        return self._trial.suggest_int(name, low, high, **kwargs)

    def _within(self, name: str, low: float, high: float) -> None:
        value = self._params.get(name)
        if value is not None and not (isinstance(value, (int, float)) and low <= value <= high):
            raise ConfigError(f"{self._where}{name} = {shown(value)} is outside the space's range [{low}, {high}]")
