"""The latency-backend registry: a backend times a deployed artifact on a target and returns a `Measurement`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from nas._registry import Registry
from nas.errors import ConfigError
from nas.hardware._measurement import Measurement
from nas.hardware._profile import HardwareProfile
from nas.spec import Precision

if TYPE_CHECKING:
    from torch import nn


class LatencyBackend(ABC):
    """Measures deployed artifacts. Backends know nothing of training or of Optuna."""

    name: str
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    """What this runtime can run; a profile may offer fewer."""
    needs_model: bool = False
    """True for backends that time the PyTorch module itself (torch-cuda) rather than the ONNX file."""

    @abstractmethod
    def measure(
        self, onnx_path: Path, *, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...],
        model: nn.Module | None = None,
    ) -> Measurement:
        """Time `onnx_path` (or `model`, for backends that need it) with input (batch, *input_shape) under the
        profile's protocol."""

    def check_precision(self, profile: HardwareProfile, precision: str) -> None:
        """Settled point 3: a precision the profile (or its runtime) lacks is an error, never a fallback."""
        if precision not in self.precisions or precision not in profile.precisions:
            raise ConfigError(f"precision {precision!r} is not available on profile {profile.name!r}; "
                              f"its precisions: {', '.join(profile.precisions)}")

    @classmethod
    def unavailable(cls, profile: HardwareProfile) -> str | None:
        """Why this machine cannot measure for `profile` itself (None: it can)."""
        return None


BACKENDS: Registry[type[LatencyBackend]] = Registry("latency backend")


def create_backend(name: str) -> LatencyBackend:
    return BACKENDS.get(name)()


def measure(onnx_path: Path, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...],
            model: nn.Module | None = None) -> Measurement:
    """Measure with the profile's backend, on this machine."""
    return create_backend(profile.backend).measure(
        onnx_path, profile=profile, precision=precision, input_shape=input_shape, model=model
    )
