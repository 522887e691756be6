"""Hardware profiles: what a target runs, how it is timed, and its budgets (hardware_profiles/*.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nas import _yaml
from nas.errors import ConfigError
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
    max_attempts: int = Field(default=3, ge=1, description="timings of one model, counting retakes when disturbed")
    quiet_wait_s: float = Field(default=5.0, ge=0,
                                description="the most one measurement waits, in all, for a disturbed machine to quiet")
    sessions: int = Field(default=1, ge=1,
                          description="fresh processes a model is timed in, keeping the fastest: on a 2-core VM "
                                      "one process's memory layout alone moved a model's p50 by up to 1.9x")

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


class SpecSheet(BaseModel):
    """Published figures of the target, the latency estimate's starting point, and where they are published."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fp32_tflops: float | None = Field(default=None, gt=0, description="dense FP32 peak")
    fp16_tflops: float | None = Field(default=None, gt=0, description="dense FP16 peak (tensor cores)")
    int8_tops: float | None = Field(default=None, gt=0, description="dense INT8 peak (tensor cores)")
    memory_bandwidth_gbs: float = Field(gt=0)
    sm_count: int | None = Field(default=None, ge=1)
    gpu_clock_mhz: float | None = Field(default=None, gt=0)
    memory_gb: float | None = Field(default=None, gt=0)
    sources: list[str] = Field(default_factory=list, description="the documents the figures above are taken from")


class PublishedLatency(BaseModel):
    """One published measurement the estimate is calibrated on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="a timm model name, e.g. resnet18, mobilenetv3_small_100")
    input_size: int = Field(ge=8)
    in_channels: int = Field(default=3, ge=1)
    precision: Precision
    batch: int = Field(default=1, ge=1)
    p50_ms: float = Field(gt=0)


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    points: list[PublishedLatency] = Field(min_length=1)


DeviceKind = Literal["cpu", "cuda-gpu", "jetson"]


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    backend: str
    """The runtime that measures: onnxruntime (CPU), torch-cuda, tensorrt."""
    runtimes: list[str] = Field(default_factory=list, description=(
        "the runtimes a candidate may deploy with, each timed in phase 1 and the fastest chosen "
        "(settled point 19); empty: the backend alone"))
    device_kind: DeviceKind = "cpu"
    device_match: str | None = Field(
        default=None, description="case-insensitive text the measuring device's name must contain (None: any)")
    aliases: list[str] = Field(default_factory=list, description="other names --hardware accepts for this profile")
    input_layout: Literal["NCHW"] = "NCHW"
    precisions: list[Precision] = Field(min_length=1)
    threads: int | None = Field(default=None, ge=1)
    batch: int = Field(default=1, ge=1)
    throughput_batch: int = Field(default=16, ge=1)
    channel_multiple: int = Field(default=1, ge=1)
    budgets: Budgets = Budgets()
    protocol: Protocol = Protocol()
    spec_sheet: SpecSheet | None = None
    calibration: Calibration | None = None
    calibration_from: str | None = Field(
        default=None, description="a profile whose calibration fit this one's estimate reuses, with its own spec sheet")
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _one_calibration(self) -> HardwareProfile:
        if self.calibration is not None and self.calibration_from is not None:
            raise ValueError("give `calibration` (published points) or `calibration_from` (another profile), not both")
        return self

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, value: str) -> str:
        from nas.hardware._backend import BACKENDS

        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; registered backends: {', '.join(BACKENDS.names())}")
        return value

    @field_validator("runtimes")
    @classmethod
    def _registered_runtimes(cls, value: list[str]) -> list[str]:
        for name in value:
            cls._registered_backend(name)
        return value

    @model_validator(mode="after")
    def _backend_first(self) -> HardwareProfile:
        """The backend is the first runtime: what measures when only one can (a remote agent, `nas measure`)."""
        runtimes = [self.backend, *(r for r in self.runtimes if r != self.backend)]
        object.__setattr__(self, "runtimes", runtimes)
        return self


def load_profile(name_or_path: str) -> HardwareProfile:
    """A profile by file path, name, or one of a profile's `aliases` (jetson-orin is the AGX Orin)."""
    try:
        path = _yaml.find("hardware profile", name_or_path, "hardware_profiles")
    except ConfigError:
        aliased = [p for p in _yaml.available("hardware_profiles").values()
                   if name_or_path in (_yaml.read_mapping(p).get("aliases") or [])]
        if not aliased:
            raise
        path = aliased[0]
    return _yaml.load_model(HardwareProfile, path).model_copy(update={"path": path})


def list_profiles() -> list[HardwareProfile]:
    return [load_profile(str(p)) for p in _yaml.available("hardware_profiles").values()]
