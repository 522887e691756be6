"""The runtime is part of the candidate (settled point 19): time each runtime x precision a profile may deploy
with, and ship the fastest that meets the accuracy rule.

Which runtime wins depends on the model and the machine (OpenVINO's per-call overhead dwarfs a small model's
work on some CPUs and not on others), so it is measured per candidate, never assumed. The choice itself is a pure
function of the timings, so it is tested on fixed numbers and re-run on stored records.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from nas.hardware._measurement import Measurement
from nas.hardware._target import Target
from nas.hardware.deploy import shipped_file
from nas.spec import Precision

if TYPE_CHECKING:
    from torch import nn

    from nas.hardware.cache import MeasurementCache

INT8_MARGIN = 0.10
"""INT8 is kept only where its p50 is at least 10% under the fastest fp32: below that, a quantized model's
accuracy risk buys nothing a busy machine's noise could not erase."""
JUDGED_ON = "p50_ms"
"""Runtimes are compared on the median call: the tail is the machine's, the median the runtime's."""


class RuntimeTiming(BaseModel):
    """One runtime x precision: its measurement, or why it was not timed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: str
    precision: Precision
    measurement: Measurement | None = None
    skipped: str | None = None


class RuntimeChoice(BaseModel):
    """Every timing of one candidate and the runtime and precision it ships with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: str
    precision: Precision
    reason: str
    timings: list[RuntimeTiming]

    @property
    def chosen(self) -> Measurement:
        return next(t.measurement for t in self.timings  # type: ignore[return-value]
                    if (t.runtime, t.precision) == (self.runtime, self.precision) and t.measurement is not None)

    @property
    def shipped(self) -> str:
        """'openvino int8': the runtime and precision the candidate ships with."""
        return f"{self.runtime} {self.precision}"

    def others(self) -> str:
        """Every other runtime x precision's p50, or that it was not timed: what the choice was made against."""
        return ", ".join(f"{t.runtime} {t.precision} " + (f"{t.measurement.p50_ms:.3f} ms" if t.measurement
                                                           else "not timed")
                         for t in self.timings if (t.runtime, t.precision) != (self.runtime, self.precision)) or "none"

    @property
    def by_precision(self) -> dict[str, Measurement]:
        """The chosen runtime's measurement of each precision it timed (what the trial records per precision)."""
        return {t.precision: t.measurement for t in self.timings
                if t.runtime == self.runtime and t.measurement is not None}


def choose(timings: list[RuntimeTiming], allowed: tuple[str, ...], *, int8_margin: float = INT8_MARGIN
           ) -> RuntimeChoice:
    """The fastest timed runtime x precision among `allowed` precisions (those meeting the accuracy rule).

    A lower precision is kept only where it beats the fastest fp32 by `int8_margin`, when fp32 is allowed too;
    ties go to the earlier timing (the profile's first runtime)."""
    timed = [t for t in timings if t.measurement is not None and t.precision in allowed]
    if not timed:
        raise ValueError(f"no timing of precisions {', '.join(allowed)} to choose from")

    def p50(t: RuntimeTiming) -> float:
        return getattr(t.measurement, JUDGED_ON)

    floats = [t for t in timed if t.precision == "fp32"]
    best_float = min(floats, key=p50) if floats else None
    dropped = []
    kept = []
    for t in timed:
        if best_float is not None and t.precision != "fp32" and p50(t) > (1 - int8_margin) * p50(best_float):
            dropped.append(f"{t.runtime} {t.precision} {p50(t):.3f} ms not {int8_margin:.0%} under "
                           f"{best_float.runtime} fp32 {p50(best_float):.3f} ms")
        else:
            kept.append(t)
    best = min(kept, key=p50)
    others = ", ".join(f"{t.runtime} {t.precision} {p50(t):.3f}" for t in timed if t is not best)
    reason = f"fastest p50: {best.runtime} {best.precision} {p50(best):.3f} ms" + (f" (others: {others} ms)"
                                                                                    if others else "")
    if dropped:
        reason += "; dropped: " + "; ".join(dropped)
    return RuntimeChoice(runtime=best.runtime, precision=best.precision, reason=reason, timings=timings)


def deployed_runtime(choice: RuntimeChoice | None, precision: str) -> str:
    """The CPU runtime an artifact of `precision` ships with: the choice's, or for another precision (a float
    export of an int8 candidate) the fastest one timed at it. ONNX Runtime without a choice, or where the choice
    is a runtime that does not run on this CPU (TensorRT, torch-cuda: they take the ONNX file)."""
    from nas.hardware.sessions import RUNTIMES

    runtime = "onnxruntime"
    if choice is not None:
        timed = [t for t in choice.timings if t.precision == precision and t.measurement is not None]
        runtime = choice.runtime if precision == choice.precision or not timed else choose(timed, (precision,)).runtime
    return runtime if runtime in RUNTIMES else "onnxruntime"


def runtime_target(target: Target, runtime: str) -> Target:
    """`target` measuring with `runtime` instead of its profile's first."""
    if runtime == target.runtime:
        return target
    return replace(target, profile=target.profile.model_copy(update={"backend": runtime}), runtime=runtime)


def shipped_timing(target: Target, choice: RuntimeChoice | None, onnx_file: Path) -> tuple[Target, Path]:
    """What times a model as it ships: `target` on the chosen runtime, and that runtime's file beside `onnx_file`
    (`deploy.shipped_file`); without a choice, `target` and `onnx_file` themselves."""
    if choice is None:
        return target, onnx_file
    return runtime_target(target, choice.runtime), shipped_file(choice, onnx_file)


def deployable_runtimes(target: Target) -> list[str]:
    """Every runtime the profile lists, where they run here; a remote agent or the estimate measures its one."""
    return list(target.profile.runtimes) if target.how == "local" else [target.runtime]  # type: ignore[list-item]


_floors: dict[tuple[str, str, int | None], float] = {}


def per_call_floor_ms(target: Target, runtime: str) -> float:
    """The runtime's p50 on a model that does almost nothing (a 1x1x8x8 ReLU): its per-call overhead here,
    timed once per process."""
    key = (target.profile.name, runtime, target.profile.threads)
    if key not in _floors:
        _floors[key] = _time_floor(target, runtime)
    return _floors[key]


def _time_floor(target: Target, runtime: str) -> float:
    from onnx import TensorProto, helper, save

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, 8, 8]) for n in ("input", "output")]
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "nas-floor",
                                                io[:1], io[1:]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory(prefix="nas-floor-") as tmp:
        path = Path(tmp) / "floor.onnx"
        save(model, str(path))
        return runtime_target(target, runtime).measure(path, "fp32", (1, 8, 8)).p50_ms


Measure = Callable[[Target, Path, Precision], Measurement]
"""(target, artifact, precision) -> its measurement."""
Quantize = Callable[[str, Path, Path], Path]
"""(runtime, float ONNX, output folder) -> that runtime's INT8 artifact."""


def measure_runtimes(target: Target, float_onnx: Path, precisions: tuple[Precision, ...], measure: Measure,
                     quantize: Quantize, workdir: Path, *, allowed: tuple[str, ...] | None = None) -> RuntimeChoice:
    """Time `float_onnx` (and each runtime's INT8 artifact, where int8 is asked) on every deployable runtime, and
    choose. A runtime whose per-call floor already exceeds the best p50 of that precision so far is not timed;
    the record says so."""
    timings: list[RuntimeTiming] = []
    for runtime in deployable_runtimes(target):
        rt_target = runtime_target(target, runtime)
        for precision in precisions:
            best = min((t.measurement.p50_ms for t in timings if t.precision == precision and t.measurement),
                       default=None)
            if best is not None and target.how == "local":
                floor = per_call_floor_ms(target, runtime)
                if floor >= best:
                    timings.append(RuntimeTiming(runtime=runtime, precision=precision, skipped=(
                        f"not timed: {runtime}'s per-call floor here, {floor:.3f} ms, is already over the "
                        f"{best:.3f} ms measured on another runtime")))
                    continue
            artifact = float_onnx if precision != "int8" else quantize(runtime, float_onnx, workdir)
            timings.append(RuntimeTiming(runtime=runtime, precision=precision,
                                         measurement=measure(rt_target, artifact, precision)))
    return choose(timings, allowed or precisions)


def measure_with(cache: MeasurementCache | None, input_shape: tuple[int, ...], module: nn.Module | None = None,
                 origin: str = "") -> Measure:
    """Measure through the cache of already-timed shapes when there is one."""

    def measure(target: Target, artifact: Path, precision: Precision) -> Measurement:
        if cache is None:
            return target.measure(artifact, precision, input_shape, module)
        return cache.measure(target, artifact, precision, input_shape, module, origin=origin)

    return measure


def int8_artifact(calibration: np.ndarray | None) -> Quantize:
    """Each runtime's own INT8: ONNX Runtime's QDQ file, OpenVINO's NNCF IR, on the same calibration images."""
    from nas.compress.quantize import quantize_int8, quantize_int8_openvino

    def quantize(runtime: str, float_onnx: Path, workdir: Path) -> Path:
        if calibration is None:
            raise ValueError("an INT8 timing needs calibration images")
        if runtime == "openvino":
            return quantize_int8_openvino(float_onnx, workdir / "int8.openvino.xml", calibration)
        return quantize_int8(float_onnx, workdir / f"int8.{runtime}.onnx", calibration)

    return quantize
