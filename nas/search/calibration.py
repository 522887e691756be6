"""Fit a latency predictor on candidates of a space measured on the target, and judge it on held-out ones.

`nas calibrate --measure N --holdout M` and benchmarks/latency_predictor.py: N + M candidates are drawn from the space
(random sampler), built and exported as phase 1 of a trial builds them (pruned to the spec's channel counts, INT8
through the runtime's own quantizer on any images: scales do not change speed), and timed on the target by the
measuring code every trial uses (here, or through the agent). The predictor is fitted on the first N and scored on
the other M. A predictor cannot be more consistent than the device: a few held-out candidates are timed a second
time, later, and how often the two timings of the same model agree within +-10% is the noise ceiling shown beside
the predictor's share.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError
from nas.hardware import Measurement, Target
from nas.hardware.predictor import (CalibrationPoint, GraphKind, KernelFeatures, LatencyPredictor,
                                    PredictorProvenance, fit_predictor, kernel_features, utc_now)
from nas.hardware.runtime_choice import int8_artifact, runtime_target
from nas.spaces import SearchSpace
from nas.spec import Precision, Spec

TOLERANCE = 0.10
"""The issue's target: the share of held-out candidates predicted within +-10% of their measured p50."""
IN_CHANNELS = 1
"""The X-ray task's images are grayscale (MedMNIST, chest X-ray folders)."""
INT8_IMAGES = 8
"""Calibration images for an INT8 artifact timed here: random, since scales do not change speed."""
MAX_DRAWS_PER_CANDIDATE = 20
"""A small space repeats itself: draws allowed per distinct candidate before settling for fewer."""
Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class MeasuredCandidate:
    name: str
    summary: str
    features: KernelFeatures
    measurement: Measurement
    timed: Path
    """The artifact timed (kept while the calibration runs, for the second timing)."""
    input_shape: tuple[int, ...]
    exported_features: KernelFeatures | None = None
    """The exported (unoptimised) graph's kernels, kept for the benchmark's comparison."""
    remeasured: Measurement | None = None

    @property
    def ms(self) -> float:
        return self.measurement.p50_ms

    def point(self, graph: GraphKind = "optimized") -> CalibrationPoint:
        features = self.features if graph == "optimized" else self.exported_features
        if features is None:
            raise ValueError(f"{self.name}: its exported graph's kernels were not kept")
        return CalibrationPoint(self.name, features, self.ms)


@dataclass
class HoldoutScore:
    within: float
    """Share of held-out candidates predicted within +-TOLERANCE."""
    median_abs_error: float
    """Median |predicted / measured - 1|."""
    spearman: float | None
    """None where undefined: fewer than 3 held out, or every prediction equal."""
    predicted_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"within_10pct": self.within, "median_abs_error": self.median_abs_error, "spearman": self.spearman}


def sample_specs(space: SearchSpace, count: int, *, seed: int, precision: Precision) -> list[Spec]:
    """`count` distinct candidates of `space` (random sampler), each at `precision`."""
    import optuna

    from nas.tasks import get_task

    task = get_task(space.task)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs: dict[str, Spec] = {}
    for _ in range(count * MAX_DRAWS_PER_CANDIDATE):
        spec = task.sample_candidate(space, study.ask(), in_channels=IN_CHANNELS, max_epochs=None,
                                     epochs=None).main.spec
        spec = spec.model_copy(update={"compression": spec.compression.model_copy(update={"quant": precision})})
        specs.setdefault(shape_key(spec), spec)
        if len(specs) == count:
            break
    return list(specs.values())


def shape_key(spec: Spec) -> str:
    """What fixes a candidate's deployed graph: two specs differing only in training or distillation are one
    model to time, and must not land on both sides of the fit / held-out split."""
    return spec.model_dump_json(include={"family", "arch", "input_size", "in_channels", "num_classes"}) + \
        f"/prune {spec.compression.prune_ratio}/{spec.compression.quant}"


def export_deployed(spec: Spec, folder: Path, *, channel_multiple: int, runtime: str) -> tuple[Path, Path]:
    """(what is timed, the ONNX file whose kernels describe it), as phase 1 builds a candidate: its pruned channel
    counts planned from its untrained shapes, exported, and quantized by `runtime`'s own quantizer for INT8."""
    import torch

    from nas.compress import build_model, plan_channels
    from nas.export import to_onnx
    from nas.models import create_model

    c = spec.compression
    if c.prune_ratio:
        channels = plan_channels(create_model(spec), spec, c.prune_ratio, channel_multiple)
        spec = spec.model_copy(update={"compression": c.model_copy(update={"channels": channels})})
    fp32 = to_onnx(build_model(spec), spec.input_shape, folder / "fp32.onnx")
    if c.quant != "int8":
        return fp32, fp32
    images = torch.randn(INT8_IMAGES, *spec.input_shape).numpy()
    quantize = int8_artifact(images)
    artifact = quantize(runtime, fp32, folder)
    return artifact, artifact if artifact.suffix == ".onnx" else quantize("onnxruntime", fp32, folder)


def measure_candidates(target: Target, specs: Sequence[Spec], workdir: Path, *, runtime: str, seed: int,
                       keep_exported: bool = False, log: Log = stderr_log) -> list[MeasuredCandidate]:
    """Export and time each candidate on the target with `runtime` (the measuring code every trial uses)."""
    import torch

    timer = runtime_target(target, runtime)
    measured = []
    for i, spec in enumerate(specs):
        name = f"c{i:02d}"
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed + i)
        timed, described = export_deployed(spec, folder, channel_multiple=target.profile.channel_multiple,
                                           runtime=runtime)
        m = timer.measure(timed, spec.compression.quant, spec.input_shape)
        batch = target.profile.batch
        measured.append(MeasuredCandidate(
            name, spec.summary(), kernel_features(described, batch=batch), m, timed, spec.input_shape,
            kernel_features(described, batch=batch, graph="exported") if keep_exported else None))
        log(f"measured {i + 1}/{len(specs)} {name}: p50 {m.p50_ms:.4f} ms  {spec.summary()}")
    return measured


def remeasure(target: Target, candidates: Sequence[MeasuredCandidate], *, runtime: str, log: Log = stderr_log
              ) -> None:
    """Time candidates a second time, after all the others: the noise ceiling."""
    timer = runtime_target(target, runtime)
    for n, c in enumerate(candidates):
        c.remeasured = timer.measure(fresh_copy(c.timed), c.measurement.precision, c.input_shape)
        log(f"re-measured {n + 1}/{len(candidates)} {c.name}: p50 {c.remeasured.p50_ms:.4f} ms "
            f"(first {c.ms:.4f} ms, {c.remeasured.p50_ms / c.ms - 1:+.1%})")



def fresh_copy(path: Path) -> Path:
    """The same ONNX graph under different bytes: an agent answers a file it has already timed from its cache,
    which would make the noise ceiling a perfect 100%. (An OpenVINO IR is timed here only, never cached.)"""
    if path.suffix != ".onnx":
        return path
    import onnx

    model = onnx.load(str(path))
    model.doc_string = "nas calibrate: the second timing of this model"
    copy = path.with_name(f"{path.stem}.again.onnx")
    onnx.save(model, str(copy))
    return copy


def score(predictor: LatencyPredictor, held: Sequence[MeasuredCandidate], graph: GraphKind = "optimized"
          ) -> HoldoutScore:
    """How well `predictor` predicts held-out measured candidates."""
    from scipy.stats import spearmanr

    predicted = np.array([predictor.predict_features(c.point(graph).features) for c in held])
    measured = np.array([c.ms for c in held])
    errors = np.abs(predicted / measured - 1.0)
    rho = float(spearmanr(predicted, measured).statistic) if len(held) > 2 else float("nan")
    return HoldoutScore(float(np.mean(errors <= TOLERANCE)), float(np.median(errors)),
                        None if np.isnan(rho) else rho, predicted.tolist())


def noise_ceiling(candidates: Sequence[MeasuredCandidate]) -> dict[str, Any]:
    """How often two timings of the same model agree within +-TOLERANCE: what no predictor can beat."""
    pairs = [(c.ms, c.remeasured.p50_ms) for c in candidates if c.remeasured is not None]
    if not pairs:
        return {"pairs": 0, "within_10pct": None, "median_abs_difference": None}
    diffs = np.array([abs(b / a - 1.0) for a, b in pairs])
    return {"pairs": len(pairs), "within_10pct": float(np.mean(diffs <= TOLERANCE)),
            "median_abs_difference": float(np.median(diffs))}


def provenance(target: Target, first: Measurement, *, runtime: str, points: int, space: SearchSpace,
               image_size: int | None) -> PredictorProvenance:
    return PredictorProvenance(
        hardware=target.profile.name, device=first.device, runtime=runtime, runtime_version=first.runtime_version,
        precision=first.precision, threads=first.threads, batch=first.batch, points=points, fitted_at=utc_now(),
        method=first.method, space=space.name, image_size=image_size, sessions=target.profile.protocol.sessions)


@dataclass
class CalibrationRun:
    predictor: LatencyPredictor
    fitted: list[MeasuredCandidate]
    held: list[MeasuredCandidate]
    holdout: HoldoutScore
    noise: dict[str, Any]
    seconds: float

    def document(self, path: Path | None) -> dict[str, Any]:
        """What `nas calibrate --measure --json` prints."""
        p = self.predictor.provenance
        rows = [{"name": c.name, "role": role, "summary": c.summary, "measured_ms": c.ms,
                 "predicted_ms": self.predictor.predict_features(c.features),
                 "relative_error": self.predictor.predict_features(c.features) / c.ms - 1.0,
                 "remeasured_ms": c.remeasured.p50_ms if c.remeasured else None,
                 "disturbed": c.measurement.disturbed}
                for role, group in (("fit", self.fitted), ("holdout", self.held)) for c in group]
        return {"hardware": p.hardware, "runtime": p.runtime, "runtime_version": p.runtime_version,
                "precision": p.precision, "device": p.device, "method": p.method, "threads": p.threads,
                "batch": p.batch, "sessions": p.sessions, "space": p.space, "image_size": p.image_size,
                "measured": len(self.fitted),
                "holdout": len(self.held), "holdout_score": self.holdout.as_dict(), "noise_ceiling": self.noise,
                "predictor": str(path) if path else None, "predictor_name": self.predictor.name,
                "coefficients": self.predictor.coefficients, "ridge": self.predictor.ridge,
                "seconds": self.seconds, "candidates": rows}


def calibrate_on_device(target: Target, space: SearchSpace, *, measure: int, holdout: int, seed: int,
                        precision: Precision, runtime: str, noise_repeats: int, image_size: int | None = None,
                        log: Log = stderr_log) -> CalibrationRun:
    """Measure `measure` + `holdout` candidates, fit on the first, score on the rest, and time a few held-out
    ones again for the noise ceiling."""
    if measure < 2:
        raise ConfigError(f"--measure must be at least 2 (the fit needs points), got {measure}")
    if holdout < 1:
        raise ConfigError(f"--holdout must be at least 1 (the fit is judged on them), got {holdout}")
    started = time.monotonic()
    specs = sample_specs(space, measure + holdout, seed=seed, precision=precision)
    if len(specs) < measure + holdout:
        raise ConfigError(f"search space {space.name!r} gave only {len(specs)} distinct candidates in "
                          f"{(measure + holdout) * MAX_DRAWS_PER_CANDIDATE} draws; ask for fewer or use a larger "
                          "space (--space)")
    log(f"calibrating {target.profile.name} ({runtime} {precision}) on {measure} + {holdout} candidates of "
        f"{space.name}")
    with tempfile.TemporaryDirectory(prefix="nas-calibrate-") as tmp:
        candidates = measure_candidates(target, specs, Path(tmp), runtime=runtime, seed=seed, log=log)
        fitted, held = candidates[:measure], candidates[measure:]
        remeasure(target, held[:noise_repeats], runtime=runtime, log=log)
    predictor = fit_predictor([c.point() for c in fitted], provenance=provenance(
        target, fitted[0].measurement, runtime=runtime, points=len(fitted), space=space, image_size=image_size))
    return CalibrationRun(predictor, fitted, held, score(predictor, held), noise_ceiling(held),
                          time.monotonic() - started)
