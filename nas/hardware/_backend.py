"""The latency-backend registry: a backend times an ONNX file on a target and returns a `Measurement`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from nas._registry import Registry
from nas.hardware._measurement import Measurement
from nas.hardware._profile import HardwareProfile
from nas.spec import Precision


class LatencyBackend(ABC):
    """Measures deployed artifacts. Backends know nothing of training or of Optuna."""

    name: str

    @abstractmethod
    def measure(
        self, onnx_path: Path, *, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...]
    ) -> Measurement:
        """Time `onnx_path` with input (batch, *input_shape) under the profile's protocol."""


BACKENDS: Registry[type[LatencyBackend]] = Registry("latency backend")


def create_backend(name: str) -> LatencyBackend:
    return BACKENDS.get(name)()


def measure(onnx_path: Path, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...]) -> Measurement:
    """Measure with the profile's backend."""
    return create_backend(profile.backend).measure(
        onnx_path, profile=profile, precision=precision, input_shape=input_shape
    )
