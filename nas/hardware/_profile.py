"""Hardware profiles: what a target runs, how it is timed, and its budgets (hardware_profiles/*.yaml)."""

from __future__ import annotations

from pathlib import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nas import _yaml
from nas.spec import Precision


class Protocol(BaseModel):
    """Warm-up, then timed runs until both a minimum count and a minimum time are reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_runs: int = Field(default=10, ge=0)
    warmup_s: float = Field(default=0.2, ge=0)
    min_runs: int = Field(default=100, ge=3)
    min_seconds: float = Field(default=1.0, ge=0)
    max_seconds: float = Field(default=20.0, gt=0)
    throughput_min_runs: int = Field(default=10, ge=1)
    throughput_min_seconds: float = Field(default=0.5, ge=0)
    percentiles: list[int] = Field(default=[50, 95, 99])

    @field_validator("percentiles")
    @classmethod
    def _needs_reported(cls, value: list[int]) -> list[int]:
        if not {50, 95, 99} <= set(value):
            raise ValueError("percentiles must include 50, 95 and 99 (the reported p50/p95/p99)")
        return value


class Budgets(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_latency_ms: float | None = Field(default=None, gt=0)
    max_memory_mb: float | None = Field(default=None, gt=0)


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    backend: str
    precisions: list[Precision] = Field(min_length=1)
    threads: int | None = Field(default=None, ge=1)
    batch: int = Field(default=1, ge=1)
    throughput_batch: int = Field(default=16, ge=1)
    channel_multiple: int = Field(default=1, ge=1)
    budgets: Budgets = Budgets()
    protocol: Protocol = Protocol()
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, value: str) -> str:
        from nas.hardware._backend import BACKENDS

        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; registered backends: {', '.join(BACKENDS.names())}")
        return value


def load_profile(name_or_path: str) -> HardwareProfile:
    path = _yaml.find("hardware profile", name_or_path, "hardware_profiles")
    return _yaml.load_model(HardwareProfile, path).model_copy(update={"path": path})


def list_profiles() -> list[HardwareProfile]:
    return [load_profile(str(p)) for p in _yaml.available("hardware_profiles").values()]
