"""The two-stage detector, the dense sliding-window baseline, and the per-scan latency composed from measurements.

Pre-processing leaves seeds: blob-like dense spots inside the lung mask (at most SEED_CAP, `blob_seeds`). Stage 1 scores
the slab tile centred on each seed; seeds over the threshold, best first, are moved onto their blob (`recentre`),
merged within MERGE_MM, and the best `candidates` go on. Stage 2 classifies a 3D patch around each; its probability
is the candidate's score, which ranks candidates for FROC. Screening thus costs one tile per seed, not a sweep of
every lung tile (which at half-tile stride on every other slice ran about four times as many inputs as the dense
baseline has windows, and still ranked nodules below the vessels around them).
The dense baseline runs stage 2 alone on overlapping windows covering the whole lung volume (no screening, no
seeds); its local maxima are moved onto their blobs the same way and scored again there.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from nas.errors import ConfigError
from nas.export import Predictor, onnx_predict, onnx_session
from nas.hardware import Measurement
from nas.hardware.deploy import DEFAULT_RUNTIME, artifact_files, predictor
from nas.tasks._latency import ScanLatency, StageTiming
from nas.tasks.nodule.froc import Candidate, Froc, ScanTruth, froc
from nas.tasks.nodule.space import NoduleSpec
from nas.tasks.nodule.volume import (
    Prepared,
    nms,
    patches,
    recentre,
    seed_tiles,
    symmetric_views,
    to_model_input,
)

__all__ = [
    "CLASSIFY_DIR",
    "DENSE_BATCH",
    "DENSE_REFINE_LIMIT_S",
    "DENSE_STRIDES",
    "PIPELINE_FILE",
    "SCREEN_BATCH",
    "SCREEN_DIR",
    "Detection",
    "ScanRun",
    "TwoStage",
    "compose_latency",
    "dense_windows",
    "evaluate_scans",
    "PipelineFiles",
    "load_pipeline",
    "over_views",
    "run_dense",
    "screen_batches",
    "select_candidates",
]

SCREEN_BATCH = 64
"""Stage 1 runs seed tiles in batches of this many: its measured unit."""
DENSE_BATCH = 16
DENSE_STRIDES = (2, 4, 8)
"""The dense baseline's steps between windows, as fractions of the window (1/2, 1/4, 1/8): finer while it finds
less than the pipeline it is compared with. Each halving runs 8x the windows (the start point's stage 2 found one of
LIDC-IDRI-0003's nodules at 1/2, two at 1/4, all three at 1/8: 160,000 windows, minutes per scan here)."""
DENSE_REFINE_LIMIT_S = 900
"""A finer dense pass expected to take longer than this (8x the last one's wall time) is not run."""
MERGE_MM = 4.0
"""Candidates closer than this after refinement are one finding."""
SCREEN_DIR, CLASSIFY_DIR = "screen", "classify"
PIPELINE_FILE = "pipeline.json"
DEPLOYED_ONNX = "model.onnx"
"""A pipeline folder (a trial's or an export's): pipeline.json, screen/model.onnx, classify/model.onnx."""
SHIPPED_FILE = "shipped.json"
"""An export's record of the file its second stage ships as and the runtime that runs it (the search's choice:
settled point 19); without it, classify/model.onnx on ONNX Runtime. The screener is never compressed and always
ships as screen/model.onnx."""

Probabilities = Callable[[np.ndarray], np.ndarray]


def probabilities(artifact: Path | Predictor, threads: int | None = None) -> Probabilities:
    """Positive-class probabilities from an ONNX file (or a predictor), for float32 inputs."""
    if isinstance(artifact, Path):
        session = onnx_session(artifact, threads)
        predict: Predictor = lambda x: onnx_predict(session, x, batch_size=len(x) or 1)
    else:
        predict = artifact

    def run(inputs: np.ndarray) -> np.ndarray:
        if len(inputs) == 0:
            return np.zeros(0, np.float32)
        logits = predict(inputs).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return (p[:, 1] / p.sum(axis=1)).astype(np.float32)

    return run


VIEW_CHUNK = 64
"""Patches whose views run at once when many are scored together (a test split's): memory, not speed."""


def over_views(predict: Probabilities, views: int) -> Probabilities:
    """Stage 2's probability of each patch as the mean over its first `views` symmetric views (`symmetric_views`),
    a patch's views in one batch: test-time augmentation that the classifier's own symmetric training makes
    meaningful. On the dsconv-32 start point, 8 views raised stage 2's validation AUC against the screener's false
    positives by about 0.02 (three trained models: 0.941 to 0.961, 0.929 to 0.952, 0.949 to 0.970) for 8 times its
    (small) share of a scan's time."""
    if views == 1:
        return predict

    def averaged(patches: np.ndarray) -> np.ndarray:
        chunks = [predict(symmetric_views(patches[i:i + VIEW_CHUNK], views)).reshape(-1, views).mean(axis=1)
                  for i in range(0, len(patches), VIEW_CHUNK)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)

    return averaged


@dataclass(frozen=True)
class Detection:
    zyx: tuple[float, float, float]
    """Position on the pipeline's 1 mm grid."""
    score: float
    screen_score: float


@dataclass
class ScanRun:
    detections: list[Detection]
    tiles: int
    """Stage-1 inputs (dense: windows) run on this scan."""
    passed: int
    """Candidates stage 2 classified."""
    timing_ms: dict[str, float] = field(default_factory=dict)

    def candidates(self, prepared: Prepared) -> list[Candidate]:
        world = prepared.to_world(np.array([d.zyx for d in self.detections])) if self.detections else []
        return [Candidate(tuple(float(v) for v in w), d.score) for w, d in zip(world, self.detections)]


@dataclass(frozen=True)
class PipelineFiles:
    """A pipeline folder's spec and the files its two stages run, with the runtime that runs the second."""

    spec: NoduleSpec
    screen: Path
    classify: Path
    classify_runtime: str = DEFAULT_RUNTIME

    def detector(self, threads: int | None = None) -> TwoStage:
        """The two stages as they ship: the second through its own runtime when that is not ONNX Runtime."""
        classify: Path | Predictor = self.classify if self.classify_runtime == DEFAULT_RUNTIME else \
            predictor(self.classify, self.classify_runtime, threads=threads)
        return TwoStage(self.spec, self.screen, classify, threads)


def load_pipeline(folder: Path) -> PipelineFiles:
    """A pipeline folder's spec and its two deployed files (the second as shipped.json names it, if present)."""
    folder = Path(folder)
    if not (folder / PIPELINE_FILE).is_file():
        raise ConfigError(f"{folder}: no {PIPELINE_FILE}; give a nodule model folder (from `nas export`) or a "
                          "nodule trial's folder")
    spec = NoduleSpec.model_validate_json((folder / PIPELINE_FILE).read_text())
    shipped = json.loads((folder / SHIPPED_FILE).read_text()) if (folder / SHIPPED_FILE).is_file() else {}
    files = folder / SCREEN_DIR / DEPLOYED_ONNX, folder / CLASSIFY_DIR / shipped.get("file", DEPLOYED_ONNX)
    for path in (files[0], *artifact_files(files[1])):
        if not path.is_file():
            raise ConfigError(f"{folder}: {path.relative_to(folder)} is missing (its artifacts were pruned, or the "
                              "export is incomplete)")
    return PipelineFiles(spec, *files, shipped.get("runtime", DEFAULT_RUNTIME))


def screen_batches(prepared: Prepared, tile: int) -> tuple[int, int]:
    """(tiles, stage-1 batches) for one scan: one tile per seed whatever its size, so known from the scan's seeds
    alone, before any training."""
    tiles = len(prepared.seeds)
    return tiles, math.ceil(tiles / SCREEN_BATCH)


class TwoStage:
    def __init__(self, spec: NoduleSpec, screen: Path | Predictor, classify: Path | Predictor,
                 threads: int | None = None) -> None:
        self.spec = spec
        self.screen_p = probabilities(screen, threads)
        self.classify_p = over_views(probabilities(classify, threads), spec.views)

    def screen(self, prepared: Prepared) -> tuple[np.ndarray, np.ndarray, int]:
        """Candidate grid positions and stage-1 scores (best first, at most `candidates`), and the tiles run."""
        seeds = prepared.seeds
        if not len(seeds):
            return np.zeros((0, 3)), np.zeros(0), 0
        scores = self._batched(to_model_input(seed_tiles(prepared, seeds, self.spec.screen.input_size)))
        centres, kept = select_candidates(prepared, seeds, scores, self.spec.screen_threshold, self.spec.candidates)
        return centres, kept, len(seeds)

    def _batched(self, inputs: np.ndarray) -> np.ndarray:
        """Stage 1 in batches of exactly SCREEN_BATCH (the last one padded), the shape it was measured at."""
        short = -len(inputs) % SCREEN_BATCH
        if short:
            inputs = np.concatenate([inputs, np.zeros((short, *inputs.shape[1:]), inputs.dtype)])
        scores = np.concatenate([self.screen_p(inputs[i:i + SCREEN_BATCH]) for i in range(0, len(inputs), SCREEN_BATCH)])
        return scores[: len(scores) - short]

    def run(self, prepared: Prepared) -> ScanRun:
        started = time.perf_counter()
        centres, screen_scores, tiles = self.screen(prepared)
        screened = time.perf_counter()
        scores = self.classify_p(to_model_input(patches(prepared, centres, self.spec.patch_size)))
        done = time.perf_counter()
        detections = sorted((Detection(tuple(c), float(s), float(f)) for c, s, f in zip(centres, scores, screen_scores)),
                            key=lambda d: -d.score)
        return ScanRun(detections, tiles, len(centres), {"screen": (screened - started) * 1000,
                                                         "classify": (done - screened) * 1000})


def select_candidates(prepared: Prepared, seeds: np.ndarray, scores: np.ndarray, threshold: float,
                      limit: int) -> tuple[np.ndarray, np.ndarray]:
    """What goes on to stage 2: seeds scoring >= threshold, best first, moved onto their blobs, merged within
    MERGE_MM, at most `limit`; returns their grid positions and scores."""
    passed = np.flatnonzero(scores >= threshold)
    order = passed[np.argsort(-scores[passed], kind="stable")][: limit * 2]
    return _settle(prepared, np.asarray(seeds, dtype=np.float64)[order], scores[order], limit)


def _settle(prepared: Prepared, centres: np.ndarray, scores: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Move rough positions (best first) onto their blobs, merge duplicates, keep the best `limit`."""
    if len(centres) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    moved = recentre(prepared, centres)
    keep = nms(moved, scores, MERGE_MM, limit)
    return moved[keep], scores[keep]


def dense_windows(prepared: Prepared, size: int, stride: int) -> np.ndarray:
    """Window centres every `stride` voxels covering the lungs: every window whose central voxel region touches the
    lung mask."""
    axes = [np.arange(size // 2, max(size // 2 + 1, n - size // 2 + 1), stride) for n in prepared.shape]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    q = max(1, size // 4)
    touched = ndimage.maximum_filter(prepared.mask, size=2 * q + 1)
    return centres[touched[centres[:, 0], centres[:, 1], centres[:, 2]]]


def _batches(classify: Probabilities, prepared: Prepared, centres: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([classify(to_model_input(patches(prepared, centres[i:i + DENSE_BATCH], size)))
                           for i in range(0, len(centres), DENSE_BATCH)]) if len(centres) else np.zeros(0)


def run_dense(classify: Probabilities, prepared: Prepared, size: int, limit: int, stride: int) -> ScanRun:
    """The baseline: stage 2 on every window over the lungs; the local maxima of its scores, moved onto their blobs
    as two-stage candidates are, merged, and scored again where they landed (so both place candidates alike)."""
    started = time.perf_counter()
    centres = dense_windows(prepared, size, stride)
    scores = _batches(classify, prepared, centres, size)
    ran = time.perf_counter()
    grid = {tuple(c): s for c, s in zip(centres.tolist(), scores)}
    best = [n for n, c in enumerate(centres.tolist())
            if all(grid.get((c[0] + dz, c[1] + dy, c[2] + dx), -1.0) <= scores[n]
                   for dz in (-stride, 0, stride) for dy in (-stride, 0, stride) for dx in (-stride, 0, stride))]
    order = sorted(best, key=lambda n: -scores[n])[: limit * 2]
    moved, _ = _settle(prepared, centres[order].astype(np.float64), scores[order], limit)
    rescored = _batches(classify, prepared, moved, size)
    detections = sorted((Detection(tuple(c), float(s), float(s)) for c, s in zip(moved, rescored)),
                        key=lambda d: -d.score)
    return ScanRun(detections, len(centres) + len(moved), len(moved),
                   {"classify": (ran - started) * 1000, "select": (time.perf_counter() - ran) * 1000})


@dataclass(frozen=True)
class Evaluation:
    froc: Froc
    runs: list[ScanRun]

    @property
    def mean_tiles(self) -> float:
        return float(np.mean([r.tiles for r in self.runs]))

    @property
    def mean_passed(self) -> float:
        return float(np.mean([r.passed for r in self.runs]))


def evaluate_scans(run: Callable[[Prepared], ScanRun], scans: list[tuple[Prepared, ScanTruth]]) -> Evaluation:
    runs = [run(prepared) for prepared, _ in scans]
    result = froc([truth for _, truth in scans], [r.candidates(p) for r, (p, _) in zip(runs, scans)])
    return Evaluation(result, runs)


def _stage(m: Measurement, runs: float, unit: str) -> StageTiming:
    return StageTiming(p50_ms=m.p50_ms * runs, p95_ms=m.p95_ms * runs, p99_ms=m.p99_ms * runs, runs=runs,
                       per_run_p50_ms=m.p50_ms, batch=m.batch, precision=m.precision, unit=unit)


def compose_latency(prepare_ms: list[list[float]], stages: dict[str, tuple[Measurement, float, str]],
                    scans: int) -> tuple[Measurement, ScanLatency]:
    """One whole scan's time: measured pre-processing plus each stage's measured per-run time on the target times
    its runs per scan (averaged over the scans), labelled `method: composed`. Percentiles are added stage by stage, so
    p95/p99 are upper bounds.
    Returns it as a `Measurement` (for objectives and budgets) and with its breakdown."""
    medians = [float(np.median(t)) for t in prepare_ms]
    prep = StageTiming(p50_ms=float(np.mean(medians)), p95_ms=float(np.mean([np.max(t) for t in prepare_ms])),
                       p99_ms=float(np.mean([np.max(t) for t in prepare_ms])), runs=1.0,
                       per_run_p50_ms=float(np.mean(medians)), batch=1, precision="fp32", unit="scan (host CPU)")
    timed = {name: _stage(m, runs, unit) for name, (m, runs, unit) in stages.items()}
    breakdown = {"preprocess": prep, **timed}
    first = next(iter(stages.values()))[0]
    precisions = {m.precision for m, _, _ in stages.values()}
    total = {k: sum(getattr(s, k) for s in breakdown.values()) for k in ("p50_ms", "p95_ms", "p99_ms")}
    measured = [m for m, _, _ in stages.values()]
    deployed = list(stages.values())[-1][0].precision
    measurement = Measurement(
        **total, mean_ms=total["p50_ms"], cv=max(m.cv for m in measured), runs=min(m.runs for m in measured),
        seconds=sum(m.seconds for m in measured), throughput_ips=1000.0 / total["p50_ms"], throughput_batch=1,
        peak_memory_mb=max(m.peak_memory_mb for m in measured), model_bytes=sum(m.model_bytes for m in measured),
        backend=first.backend, runtime_version=first.runtime_version, device=first.device, precision=deployed,
        batch=1, threads=first.threads, method="composed", load_avg=max(m.load_avg for m in measured),
        attempts=max(m.attempts for m in measured),
    )
    latency = ScanLatency(scan_ms=total["p50_ms"], stages=breakdown, scans=scans,
                          precision=precisions.pop() if len(precisions) == 1 else "mixed")
    return measurement, latency
