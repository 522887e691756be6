"""Finding nodules in one CT series with an exported two-stage pipeline: what `nas detect` prints."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nas.tasks.nodule.data import read_scan
from nas.tasks.nodule.pipeline import load_pipeline
from nas.tasks.nodule.volume import diameter_mm, prepare

SCHEMA_VERSION = 1
WEAK_CPM = 0.2
"""Below this CPM (mean sensitivity over 1/8..8 false positives per scan) most nodules are missed at every
operating point: the candidates such a model lists are not worth a reader's attention."""


def model_figures(model_dir: Path) -> dict[str, Any]:
    """The pipeline's validation and test CPM as its export (model_card.json) or trial folder recorded them, and
    a warning when the model is weak; a figure nobody recorded is None."""
    folder = Path(model_dir)
    card, result, test = (folder / name for name in ("model_card.json", "result.json", "test_metrics.json"))
    if card.is_file():
        metrics = json.loads(card.read_text())["metrics"]
        val, tested = metrics.get("val") or {}, metrics.get("test") or {}
    else:
        val = json.loads(result.read_text())["metrics"]["val"] if result.is_file() else {}
        tested = json.loads(test.read_text()) if test.is_file() else {}
    figures = {"val_cpm": val.get("cpm"), "test_cpm": tested.get("cpm")}
    judged = figures["test_cpm"] if figures["test_cpm"] is not None else figures["val_cpm"]
    weak = judged is not None and judged < WEAK_CPM
    return {**figures, "warning": (f"weak model: {'test' if figures['test_cpm'] is not None else 'validation'} "
                                   f"CPM {judged:.3f} is under {WEAK_CPM}; its candidates mean little") if weak
            else None if judged is not None else "this model's CPM is not recorded: its accuracy is unknown"}



def detect(model_dir: Path, scan_path: Path, *, min_score: float = 0.0, threads: int | None = None,
           log: Any = None) -> dict[str, Any]:
    """Candidate nodules in one scan (detect.v1): world mm in the DICOM patient frame, voxel [column, row, slice],
    a size estimate and the second stage's score, highest first; and the time each step took.

    DICOM problems are reported by the readers; a scan in which no lung is found raises DataError."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    files = load_pipeline(model_dir)
    spec = files.spec
    figures = model_figures(model_dir)
    if figures["warning"]:
        say(f"warning: {figures['warning']}")
    detector = files.detector(threads)
    say(f"second stage: {files.classify.relative_to(model_dir)} on {files.classify_runtime}")
    timing: dict[str, float] = {}
    started = time.perf_counter()
    scan = read_scan(Path(scan_path))
    timing["load"] = (time.perf_counter() - started) * 1000
    say(f"read {scan.shape[0]} slices of {scan.shape[1]}x{scan.shape[2]} ({timing['load']:.0f} ms)")
    mark = time.perf_counter()
    prepared = prepare(scan)
    timing["preprocess"] = (time.perf_counter() - mark) * 1000
    say(f"lungs on a 1 mm grid: {prepared.shape} ({timing['preprocess']:.0f} ms)")
    run = detector.run(prepared)
    timing |= run.timing_ms
    say(f"screened {run.tiles} tiles ({timing['screen']:.0f} ms), classified {run.passed} candidates "
        f"({timing['classify']:.0f} ms)")
    mark = time.perf_counter()
    kept = [d for d in run.detections if d.score >= min_score]
    zyx = np.array([d.zyx for d in kept]).reshape(-1, 3)
    world, voxel, sizes = prepared.to_world(zyx), prepared.to_scan_voxel(zyx), diameter_mm(prepared, zyx)
    candidates = [{"world_mm": [round(float(v), 2) for v in w], "voxel": [round(float(v), 2) for v in ijk],
                   "diameter_mm": round(float(size), 1), "score": float(d.score),
                   "screen_score": float(d.screen_score)}
                  for w, ijk, size, d in zip(world, voxel, sizes, kept)]
    timing["postprocess"] = (time.perf_counter() - mark) * 1000
    timing["total"] = (time.perf_counter() - started) * 1000
    return {"schema_version": SCHEMA_VERSION, "series_uid": scan.series_uid, "candidates": candidates,
            "timing_ms": {k: round(v, 1) for k, v in timing.items()},
            "pipeline": spec.summary(), "min_score": min_score, "model": figures}
