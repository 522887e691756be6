"""The family registry: a family turns sampled parameters into an architecture and builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from nas._registry import Registry
from nas.spec import Spec


class ParamFn(Protocol):
    """Draws the value of a declared parameter; `index` makes a per-stage copy of it."""

    def __call__(self, name: str, index: int | None = None) -> Any: ...


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    params: tuple[str, ...]
    """Parameters a search space must declare for this family (a range, a choice or a fixed value)."""
    sample: Callable[[ParamFn], dict[str, Any]]
    """Turns drawn parameters into the resolved `Spec.arch` (e.g. a list of stages)."""
    build: Callable[[Spec], nn.Module]
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
