"""The one path every trial takes (ARCHITECTURE.md): phase 1 measures shapes, phase 2 trains and scores."""

from __future__ import annotations

import io
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from nas import interrupt
from nas._io import atomic_write_bytes, write_json
from nas.data import Dataset
from nas.export import check_parity, to_onnx
from nas.hardware import HardwareProfile, Measurement, measure
from nas.models import create_model
from nas.models.complexity import count_macs, count_params
from nas.search.result import TrialResult
from nas.spaces import SearchSpace, sample_spec
from nas.spec import Spec
from nas.tasks import Task


class Infeasible(Exception):
    """The candidate breaks a hardware budget; it is stopped before any training is spent."""


@dataclass
class TrialContext:
    """Everything a trial needs, built once per search."""

    task: Task
    space: SearchSpace
    profile: HardwareProfile
    dataset: Dataset
    results_dir: Path
    seed: int
    target_sensitivity: float
    max_latency_ms: float | None
    max_epochs: int | None
    trial_timeout: float | None

    def trial_dir(self, number: int) -> Path:
        return self.results_dir / "trials" / str(number)


def run_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialResult:
    seconds: dict[str, float] = {}
    deadline = time.monotonic() + ctx.trial_timeout if ctx.trial_timeout else None
    spec = sample_spec(ctx.space, trial, in_channels=ctx.dataset.in_channels, num_classes=2,
                       max_epochs=ctx.max_epochs)
    out = ctx.trial_dir(trial.number)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(spec.to_json())
    trial.set_user_attr("spec", spec.model_dump(mode="json"))

    # Phase 1: latency depends only on shapes, so it is measured on the untrained model first.
    started = time.monotonic()
    torch.manual_seed(ctx.seed + trial.number)  # initial weights are part of what --seed fixes
    model = create_model(spec)
    params, macs = count_params(model), count_macs(model, spec.input_shape)
    shape_onnx = to_onnx(model, spec.input_shape, out / "shape.onnx")
    measurement = measure(shape_onnx, ctx.profile, spec.compression.quant, spec.input_shape)
    shape_onnx.unlink()
    seconds["measure"] = time.monotonic() - started
    write_json(out / "measurement.json", measurement.model_dump())
    trial.set_user_attr("measurement", measurement.model_dump())
    if spec.baseline is None:  # baselines are the yardstick: always trained, even when over budget
        check_budgets(ctx, measurement)
    interrupt.check()

    # Phase 2: train, export the deployed artifact, score it on the validation split.
    started = time.monotonic()
    train_log = ctx.task.train(model, spec, ctx.dataset, seed=ctx.seed + trial.number, deadline=deadline)
    seconds["train"] = time.monotonic() - started
    interrupt.check()
    started = time.monotonic()
    save_weights(model, out / "model.pt")
    onnx_path = to_onnx(model, spec.input_shape, out / "model.onnx")
    check_parity(model, onnx_path, ctx.task.sample_inputs(spec, ctx.dataset))
    val = ctx.task.evaluate(onnx_path, spec, ctx.dataset, "val", threshold=None,
                            target_sensitivity=ctx.target_sensitivity)
    seconds["evaluate"] = time.monotonic() - started
    result = TrialResult(trial=trial.number, spec=spec, params=params, macs=macs, measurement=measurement,
                         metrics={"val": val}, train_log=train_log, seconds=seconds)
    write_json(out / "result.json", result.model_dump(mode="json"))
    return result


def check_budgets(ctx: TrialContext, m: Measurement) -> None:
    budget = ctx.max_latency_ms
    if budget is not None and m.p95_ms > budget:
        raise Infeasible(f"p95 latency {m.p95_ms:.3f} ms is over the {budget} ms budget")
    memory = ctx.profile.budgets.max_memory_mb
    if memory is not None and m.peak_memory_mb > memory:
        raise Infeasible(f"peak memory {m.peak_memory_mb:.1f} MB is over the {memory} MB budget")


def save_weights(model: torch.nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_model(spec: Spec, weights: Path) -> torch.nn.Module:
    model = create_model(spec)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def record_failure(ctx: TrialContext, number: int, exc: BaseException, kind: str) -> str:
    reason = f"{type(exc).__name__}: {exc}" if kind == "error" else str(exc)
    write_json(ctx.trial_dir(number) / ("failure.json" if kind != "infeasible" else "infeasible.json"),
               {"kind": kind, "reason": reason, "traceback": traceback.format_exc() if kind == "error" else None})
    return reason
