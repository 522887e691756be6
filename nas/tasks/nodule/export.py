"""Exporting a nodule trial: both stage models (ONNX, verified against PyTorch), the pipeline config, a model card.

The folder is what `nas detect --model` reads: pipeline.json, screen/model.onnx, classify/model.onnx (plus weights
and specs, so the member can be rebuilt and re-measured), shipped.json (the second stage's file for the runtime the
search chose, e.g. OpenVINO's IR, and that runtime), pipeline_config.json (every constant a deployment must repeat),
model_card.md / model_card.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas._io import atomic_write_text, write_json
from nas.compress import load_model
from nas.data import Dataset
from nas.export import check_parity
from nas.hardware.deploy import (DEFAULT_RUNTIME, artifact_files, deployed_parity, predictor, shipped_file,
                                 write_artifact)
from nas.tasks._task import Task
from nas.data.lidc_slices import HU_HIGH as CROP_HU_HIGH
from nas.data.lidc_slices import HU_LOW as CROP_HU_LOW
from nas.tasks.nodule.data import nodule_data
from nas.tasks.nodule.material import CROP_PIXEL_MM
from nas.tasks.nodule.pipeline import (
    CLASSIFY_DIR,
    DENSE_BATCH,
    DENSE_STRIDES,
    DEPLOYED_ONNX,
    MERGE_MM,
    PIPELINE_FILE,
    SCREEN_BATCH,
    SCREEN_DIR,
    SHIPPED_FILE,
    load_pipeline,
)
from nas.tasks.nodule.volume import (
    GRID_MM,
    HU_HIGH,
    HU_LOW,
    MASK_MM,
    MEAN,
    PATCH_DEPTH_MM,
    RECENTRE_FLOOR_HU,
    RECENTRE_MM,
    RECENTRE_STEPS,
    SEED_CAP,
    SEED_MIN_HU,
    SEED_MIN_RESPONSE,
    SEED_MM,
    SEED_SIGMAS_MM,
    SLAB_OFFSETS,
    STD,
    VIEWS,
)

if TYPE_CHECKING:
    from nas.hardware.runtime_choice import RuntimeChoice

__all__ = ["export_nodule_trial", "pipeline_config", "ship_classifier"]

STAGE_FILES = ("model.onnx", "model.fp32.onnx", "model.pt")


def pipeline_config(folder: Path) -> dict[str, Any]:
    """Everything a deployment must do around the two models, with the values this pipeline uses."""
    spec = load_pipeline(folder).spec
    tile, patch = spec.screen.input_size, spec.patch_size
    return {
        "preprocess": {
            "lung_mask": "threshold mask (< -400 HU inside the body, two largest air regions) on a "
                         f"~{MASK_MM:g} mm subsample, dilated 4 mm", "crop": "the mask's bounding box",
            "grid_mm": GRID_MM, "resample": "trilinear to 1 mm on every axis",
            "window_hu": [HU_LOW, HU_HIGH], "normalise": f"(clip((HU - {HU_LOW:g}) / {HU_HIGH - HU_LOW:g}, 0, 1) - "
                                                          f"{MEAN}) / {STD}",
            "seeds": {"grid_mm": SEED_MM, "dog_sigmas_mm": list(SEED_SIGMAS_MM), "dog": "G(sigma) - G(2 sigma), "
                      "max over sigmas, 3x3x3 local maxima inside the lung mask",
                      "min_response": SEED_MIN_RESPONSE, "min_centre_hu": SEED_MIN_HU, "cap": SEED_CAP}},
        "screen": {"input": [SCREEN_BATCH, len(SLAB_OFFSETS), tile, tile], "slab_offsets_mm": list(SLAB_OFFSETS),
                   "tiles": "one per seed, centred on it", "batch": SCREEN_BATCH,
                   "threshold": spec.screen_threshold, "candidates": spec.candidates,
                   "selection": "seeds over the threshold, best first, moved to the density-weighted centroid "
                                f"(above {RECENTRE_FLOOR_HU:g} HU) within {RECENTRE_MM:g} mm ({RECENTRE_STEPS} "
                                f"steps), merged within {MERGE_MM:g} mm, the best `candidates` kept"},
        "classify": {"input": [spec.views, 1, patch, patch, patch], "patch_mm": patch * GRID_MM,
                     "depth": f"the central {PATCH_DEPTH_MM:g} slices kept, those beyond mirrored ('symmetric')",
                     "views": [_view_name(flips, transpose) for flips, transpose in VIEWS[:spec.views]],
                     "output": "logits [other, nodule] per view; score = mean over the views of softmax(logits)[1]"},
        "dense_baseline": {"windows": f"{patch}^3 over the lungs at stride "
                                      + " then ".join(str(max(1, patch // f)) for f in DENSE_STRIDES)
                                      + " while it finds fewer nodules than the pipeline",
                           "batch": DENSE_BATCH, "selection": "local maxima of the window scores, moved and merged "
                                                              "as above, scored again where they land"},
    }


def _view_name(flips: tuple[int, ...], transpose: bool) -> str:
    steps = (["transpose y/x"] if transpose else []) + [f"flip {'zyx'[axis]}" for axis in flips]
    return ", then ".join(steps) or "as is"


def export_nodule_trial(folder: Path, result: Any, task: Task, dataset: Dataset, out: Path) -> dict[str, Any]:
    """Write the nodule trial in `folder` (its finished `result`, trained on `dataset`) to `out`; returns the model
    card as a dict. The caller opens the study (nas.report.package.open_trial): a task never reads the search."""
    study, trial = folder.parent.parent.name, int(folder.name)
    spec = load_pipeline(folder).spec
    out = Path(out)
    parity = {}
    for stage, stage_spec in ((SCREEN_DIR, spec.screen), (CLASSIFY_DIR, spec.classify)):
        (out / stage).mkdir(parents=True, exist_ok=True)
        for name in STAGE_FILES:
            if (folder / stage / name).exists():
                shutil.copy2(folder / stage / name, out / stage / name)
        atomic_write_text(out / stage / "spec.json", stage_spec.to_json())
        model = load_model(stage_spec, out / stage / "model.pt")
        onnx = out / stage / ("model.fp32.onnx" if (out / stage / "model.fp32.onnx").exists() else "model.onnx")
        inputs = task.sample_inputs(stage_spec, dataset)
        parity[stage] = check_parity(model, onnx, inputs)
    classifier, classify_inputs = model, inputs  # the loop's last stage
    shipped = ship_classifier(folder, out, result.runtime_choice, spec.classify.compression.quant)
    write_json(out / SHIPPED_FILE, shipped)
    path = out / CLASSIFY_DIR / shipped["file"]
    shipped = deployed_parity(classifier, path, predictor(path, shipped["runtime"]), shipped["runtime"],
                              shipped["precision"], classify_inputs.numpy())
    shutil.copy2(folder / PIPELINE_FILE, out / PIPELINE_FILE)
    write_json(out / "pipeline_config.json", pipeline_config(out))

    pareto = folder.parent.parent / "pareto.json"
    member = next((m for m in json.loads(pareto.read_text())["members"] if m["trial"] == trial), None) \
        if pareto.exists() else None
    test = json.loads((folder / "test_metrics.json").read_text()) if (folder / "test_metrics.json").exists() else None
    latency = member["latency"] if member else result.measurement.model_dump() | (
        result.scan_latency.latency_fields() if result.scan_latency else {})
    card = {
        "study": study, "trial": trial, "task": "nodule", "pipeline": spec.summary(), "spec": spec.model_dump(),
        "metrics": {"val": result.metrics["val"], "test": test},
        "metrics_note": "auc, accuracy, sensitivity, specificity, threshold: the second stage on its patches; cpm and "
                        "sensitivity_at_fp: the whole pipeline on whole scans (LUNA16 FROC rules)",
        "shipped": shipped, "latency": latency, "parity_max_abs_diff": parity, "data": nodule_data(dataset).describe(),
        "crop_assumption_mm": CROP_PIXEL_MM, "crop_window_hu": [CROP_HU_LOW, CROP_HU_HIGH], "flags": result.flags,
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) + ["model_card.md"],
    }
    write_json(out / "model_card.json", card)
    atomic_write_text(out / "model_card.md", _card_markdown(card))
    return card


def ship_classifier(folder: Path, out: Path, choice: RuntimeChoice | None, precision: str) -> dict[str, str]:
    """Put the second stage's artifact for the runtime the search chose into `out`/classify (settled point 19):
    OpenVINO's own INT8 IR as phase 2 wrote and scored it, OpenVINO's IR of the float ONNX, or ONNX Runtime's
    model.onnx; returns what shipped.json records."""
    runtime = choice.runtime if choice else DEFAULT_RUNTIME
    if runtime == DEFAULT_RUNTIME:
        return {"file": DEPLOYED_ONNX, "runtime": runtime, "precision": precision}
    scored = shipped_file(choice, folder / CLASSIFY_DIR / DEPLOYED_ONNX)
    if scored.suffix == ".xml":
        for path in artifact_files(scored):
            shutil.copy2(path, out / CLASSIFY_DIR / path.name)
        written = out / CLASSIFY_DIR / scored.name
    else:
        written = write_artifact(runtime, precision, out / CLASSIFY_DIR / DEPLOYED_ONNX, out / CLASSIFY_DIR, None)
    return {"file": written.name, "runtime": runtime, "precision": precision}


def _metrics_row(name: str, m: dict[str, Any] | None) -> str:
    if not m:
        return f"| {name} | not scored yet (finish the search to score front members on test) | | | | |"
    fp = m["sensitivity_at_fp"]
    return (f"| {name} | {m['cpm']:.3f} | {fp['1']:.3f} | {fp['4']:.3f} | {m['auc']:.3f} | "
            f"{m['sensitivity']:.3f} / {m['specificity']:.3f} |")


PATCH_LABELS = {"classify_vs_screen_fp": "classify, nodules against the screener's false positives beside them"}


def _patch_lines(patch: dict[str, Any] | None) -> list[str]:
    if not patch:
        return []
    return ["Each stage on the test patients' examples (LIDC crops and volumes, hundreds of nodules): "
            + "; ".join(f"{PATCH_LABELS.get(stage, stage)} AUC {f['auc']:.3f} (95% bootstrap {f['auc_95ci'][0]:.3f}-{f['auc_95ci'][1]:.3f}, "
                        f"{f['positives']} nodules of {f['examples']} examples)" for stage, f in patch.items()) + ".", ""]


def _per_split(value: Any) -> str:
    """'train 1, val 0, test 1' for a per-split figure (ids listed, 'none' for no ids), not a Python dict."""
    if not isinstance(value, dict):
        return str(value)
    return ", ".join(f"{split} {' '.join(map(str, v)) or 'none'}" if isinstance(v, (list, tuple)) else f"{split} {v}"
                     for split, v in value.items())


def _card_markdown(card: dict[str, Any]) -> str:
    data, lat = card["data"], card["latency"]
    stages = lat.get("stages", {})
    lines = [
        f"# Nodule detection pipeline: trial {card['trial']} of study {card['study']}", "",
        f"`{card['pipeline']}`", "",
        "Two stages: a 2D screener scores a 3-slice slab tile centred on each seed (a blob-like dense spot inside the "
        "lung mask); a 3D classifier scores a patch around each of the best candidates. Output: candidate nodules with world "
        "coordinates (DICOM patient frame, mm), a diameter estimate and a score (`nas detect`).", "",
        "## Data", "",
        f"- Scans per split: {_per_split(data['scans'])}; reference nodules (LUNA16 rule) per split: "
        f"{_per_split(data['reference_nodules'])}; patients: {_per_split(data['patients'])}.",
        f"- Reference standard: {data['reference_standard']}. Validation: {data['validation']}.",
        "- Training examples: the training patients' LIDC nodules in their surroundings (axial crops, pixels taken "
        f"as {card['crop_assumption_mm']} mm, grey levels read back over the measured {card['crop_window_hu']} HU; "
        "nodule volumes), their surroundings and the training scans' lung as negatives. The test scans and test "
        "patients were never seen by training or search.",
        f"- {data['note']}.", "",
        "## Detection and classification", "",
        "| split | CPM | sens @ 1 FP/scan | sens @ 4 FP/scan | patch AUC | patch sens / spec |", "|---|---|---|---|---|---|",
        _metrics_row("validation", card["metrics"]["val"]), _metrics_row("test", card["metrics"]["test"]), "",
        card["metrics_note"] + ".", "", *_patch_lines((card["metrics"]["test"] or {}).get("patch")),
        "## Time per whole scan", "",
        f"{lat.get('scan_ms', lat['p50_ms']):.0f} ms (p50, {lat['backend']} on {lat['device']}, precision "
        f"{lat['precision']}, {lat['method']}); each stage's model measured on the target at its batch, times its "
        "runs per scan, plus measured pre-processing. The screener ships as screen/model.onnx on onnxruntime, the "
        f"second stage as classify/{card['shipped']['file']} on {card['shipped']['runtime']} "
        f"{card['shipped']['precision']} (the runtime the search measured fastest for it):", "",
        "| stage | ms per scan | runs per scan | per run (p50 ms) | unit |", "|---|---|---|---|---|",
        *(f"| {name} | {s['p50_ms']:.1f} | {s['runs']:.1f} | {s['per_run_p50_ms']:.3f} | {s['unit']} |"
          for name, s in stages.items()), "",
        "## Limits", "",
        "- Validated on very few scans; the CPM above is not an estimate of clinical performance.",
        "- The size estimate is the equivalent-sphere diameter of the dense (> -400 HU) region around a candidate, a "
        "measurement of the image, not of a model; nodules against the chest wall may merge with it.",
        *(f"- {flag}" for flag in card["flags"]),
    ]
    return "\n".join(lines) + "\n"
