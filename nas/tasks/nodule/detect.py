"""Finding nodules in one CT series with an exported two-stage pipeline: what `nas detect` prints."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.tasks.nodule.data import read_scan
from nas.tasks.nodule.pipeline import load_pipeline
from nas.tasks.nodule.volume import diameter_mm, prepare

if TYPE_CHECKING:
    from nas.tasks.nodule.froc import ScanTruth

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
           truth: Path | None = None, log: Any = None) -> dict[str, Any]:
    """Candidate nodules in one scan (detect.v1): world mm in the DICOM patient frame, voxel [column, row, slice],
    a size estimate and the second stage's score, highest first; and the time each step took. With `truth` (a
    LUNA16 annotations.csv), which reference nodules of this series the candidates found and at which rank.

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
    reference = reference_of(Path(truth), scan.series_uid) if truth is not None else None
    if reference is not None:
        say(f"reference: {len(reference.truth.nodules)} nodule(s) of this series in {truth}"
            + (f", {len(reference.truth.excluded)} excluded finding(s)" if reference.excluded else ""))
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
    found = {"schema_version": SCHEMA_VERSION, "series_uid": scan.series_uid, "candidates": candidates,
             "timing_ms": {k: round(v, 1) for k, v in timing.items()},
             "pipeline": spec.summary(), "min_score": min_score, "model": figures}
    return found | ({"truth": judge(candidates, reference)} if reference is not None else {})


@dataclass(frozen=True)
class Reference:
    truth: ScanTruth
    annotations: Path
    excluded: Path | None


def reference_of(annotations: Path, series_uid: str) -> Reference:
    """The series' reference nodules in `annotations` (LUNA16's annotations.csv), and the findings of its sibling
    annotations_excluded.csv, if present, which count neither as hit nor as false positive (LUNA16's rule)."""
    from nas.data.luna16 import read_annotations
    from nas.tasks.nodule.froc import Finding, ScanTruth

    excluded_csv = annotations.with_name("annotations_excluded.csv")
    findings = {name: tuple(Finding(a.world_mm, a.diameter_mm) for a in read_annotations(path, series_uid))
                for name, path in (("nodules", annotations), ("excluded", excluded_csv))
                if name == "nodules" or path.is_file()}
    return Reference(ScanTruth(series_uid, findings["nodules"], findings.get("excluded", ())), annotations,
                     excluded_csv if "excluded" in findings else None)


def judge(candidates: list[dict[str, Any]], reference: Reference) -> dict[str, Any]:
    """Each reference nodule found or missed, at which rank among the candidates (1 = highest score), its score
    there and the false positives ranked above it; each candidate labelled "nodule 1", "excluded" or "false
    positive" (within a finding's radius, LUNA16's rule)."""
    from nas.tasks.nodule.froc import Candidate, hits_by_candidate

    labels = hits_by_candidate(reference.truth, [Candidate(tuple(c["world_mm"]), c["score"]) for c in candidates])
    nodules = []
    for n, nodule in enumerate(reference.truth.nodules):
        rank = next((r for r, hit in enumerate(labels, start=1) if hit and n in hit), None)
        nodules.append({"world_mm": list(nodule.world_mm), "diameter_mm": nodule.diameter_mm, "found": rank is not None,
                        "rank": rank, "score": candidates[rank - 1]["score"] if rank else None,
                        "false_positives_above": sum(hit is None for hit in labels[:rank - 1]) if rank else None})
    for c, hit in zip(candidates, labels):
        c["truth"] = "false positive" if hit is None else "excluded" if not hit else \
            ", ".join(f"nodule {n + 1}" for n in hit)
    return {"annotations": str(reference.annotations),
            "excluded": str(reference.excluded) if reference.excluded else None,
            "nodules": nodules, "found": sum(n["found"] for n in nodules),
            "false_positives": sum(hit is None for hit in labels)}
