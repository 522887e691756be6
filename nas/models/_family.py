"""The family registry: a family turns sampled parameters into an architecture and builds it."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn

from nas._registry import Registry
from nas.spec import Spec


class ParamFn(Protocol):
    """Draws the value of a declared parameter; `index` makes a per-stage copy of it."""

    def __call__(self, name: str, index: int | None = None) -> Any: ...


@dataclass(frozen=True)
class Bounds:
    """The values one declared parameter may take, so a space that cannot build is refused when it is loaded
    rather than failing inside every trial."""

    kind: type
    """int, float, str or bool; a float parameter also takes integers."""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: Any) -> bool:
        if self.kind is bool:
            return isinstance(value, bool)
        if self.choices:
            return not isinstance(value, bool) and value in self.choices
        if self.kind is str:
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    @property
    def ranged(self) -> bool:
        """Whether a `low`..`high` range makes sense for it (numbers without a fixed set of choices)."""
        return self.kind in (int, float) and not self.choices

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind is str:
            return "a name"
        what = "an integer" if self.kind is int else "a number"
        return (f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    params: tuple[str, ...]
    """Parameters a search space must declare for this family (a range, a choice or a fixed value)."""
    sample: Callable[[ParamFn], dict[str, Any]]
    """Turns drawn parameters into the resolved `Spec.arch` (e.g. a list of stages)."""
    build: Callable[[Spec], nn.Module]
    bounds: Mapping[str, Bounds] = field(default_factory=dict)
    """What each of `params` may be; a search space's values are checked against it when loaded."""
    spatial_dims: int = 2
    """2: images (C, H, W); 3: volumes (C, D, H, W), as MONAI's `spatial_dims`. Specs of the family carry it."""


FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    return FAMILIES.register(family.name, family)


def get_family(name: str) -> Family:
    return FAMILIES.get(name)


def list_families() -> list[str]:
    return FAMILIES.names()


def create_model(spec: Spec) -> nn.Module:
    """Build the (untrained) PyTorch model a spec describes."""
    return get_family(spec.family).build(spec)
