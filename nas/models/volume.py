"""3D (volume) families: which registered families take cubic patches, and a spec view with a 3D input shape.

`Spec.input_shape` is (C, H, W); a 3D family's input is (C, D, H, W) with D = H = W = `input_size`. `VolumeSpec`
is the same plain data with that shape, so pruning, export and measurement, which read `spec.input_shape`, work on
3D models unchanged. It serialises exactly as a `Spec` does; `as_model_spec` re-wraps a stored spec.
"""

from __future__ import annotations

from nas.models._family import Family, register_family
from nas.spec import Spec

__all__ = ["PATCH_PARAMS", "VolumeSpec", "as_model_spec", "is_volume_family", "list_volume_families",
           "register_volume_family"]

PATCH_PARAMS = ("patch_size", "candidates", "screen_threshold")
"""Declared beside every 3D family's architecture in a space: the patch edge the second stage classifies, and how
many first-stage candidates, above what first-stage score, it is given (they set how often the model runs)."""

_VOLUME: set[str] = set()


def register_volume_family(family: Family) -> Family:
    """Register a family whose models take (C, D, H, W) cubes."""
    _VOLUME.add(family.name)
    return register_family(family)


def is_volume_family(name: str) -> bool:
    return name in _VOLUME


def list_volume_families() -> list[str]:
    return sorted(_VOLUME)


class VolumeSpec(Spec):
    """A spec of a 3D family: its input is a cube of `input_size` voxels on each side."""

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (self.in_channels, self.input_size, self.input_size, self.input_size)


def as_model_spec(spec: Spec) -> Spec:
    """The spec with the input shape its family takes (a `VolumeSpec` for 3D families)."""
    if is_volume_family(spec.family) and not isinstance(spec, VolumeSpec):
        return VolumeSpec.model_validate(spec.model_dump())
    return spec
