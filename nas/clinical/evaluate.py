"""`nas evaluate`: an export's deployed file scored on a labelled split the way a clinic audits it before use.

Everything runs on what ships: the deployed file named in io.json run with the runtime it names, io.json's
pre-processing, its calibration
(temperature), its threshold and its referral band. Intervals are percentile bootstraps over cases (1000
resamples, seeded, as in the model card); subgroups are resampled within themselves.

A case's key (what `--groups` names): for an image folder, the file's path relative to the data root
(`test/PNEUMONIA/person1_virus_6.jpeg`); for an .npz, `<split>/<index>`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas._io import file_digest
from nas.clinical.calibration import ECE_BINS, calibrated_scores, expected_calibration_error, in_band
from nas.clinical.predict import DeployedModel
from nas.clinical.shadow import match_cases, read_case_csv
from nas.data import Dataset, load_dataset
from nas.data.imagefolder import SPLIT_FOLDERS
from nas.defaults import EVALUATE_MARGIN
from nas.errors import DataError
from nas.export import Normalisation, image_inputs
from nas.hardware.deploy import artifact_files, predictor
from nas.metrics import roc_auc

__all__ = ["Cases", "against_targets", "case_keys", "evaluate_export", "figures", "flag_rule", "load_cases",
           "logits", "subgroups", "summary", "target_rule"]

RESAMPLES = 1000


def logits(model: DeployedModel, images: np.ndarray) -> np.ndarray:
    """The deployed file's logits for uint8 (N, C, H, W) images, run with its runtime and pre-processed as at
    export (the same resize and normalisation the export scored validation and test with), in batches."""
    norm = Normalisation(mean=model.preprocessing.mean, std=model.preprocessing.std)
    return predictor(model.file, model.runtime)(image_inputs(images, model.preprocessing.size[0], norm).numpy())


@dataclass(frozen=True)
class Cases:
    """One labelled split with a key per case."""

    keys: list[str]
    images: np.ndarray
    labels: np.ndarray
    dataset: Dataset
    split: str


def case_keys(dataset: Dataset, split: str) -> list[str]:
    """Keys in the reader's order: image paths relative to the root for an image folder, `<split>/<index>` for
    an .npz."""
    return dataset.case_names(split)


def load_cases(data: str | Path | None, split: str, model: DeployedModel, positive_class: str | None = None) -> Cases:
    """`split` of `data`; its positive class is `positive_class`, else the export's (names compared ignoring
    case: the bundled npz says "pneumonia" where a folder says "PNEUMONIA"); its channels must be the model's."""
    if split not in SPLIT_FOLDERS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLIT_FOLDERS)}")
    wanted = positive_class or model.io.get("positive_class")
    dataset = load_dataset(data)
    named = [c for c in dataset.class_names if wanted is not None and c.lower() == str(wanted).lower()]
    if wanted is not None and not named:
        raise DataError(f"{dataset.path}: no class {wanted!r} (the model's positive class) among "
                        f"{', '.join(dataset.class_names)}; pass --positive-class with the data's name for it")
    if named and named[0] != dataset.positive_class:
        dataset = load_dataset(data, positive_class=named[0])
    if dataset.in_channels != model.preprocessing.channels:
        raise DataError(f"{dataset.path}: images have {dataset.in_channels} channel(s) but the model in "
                        f"{model.folder} takes {model.preprocessing.channels} (io.json input_shape)")
    part = dataset.split(split)
    return Cases(case_keys(dataset, split), part.images, part.labels, dataset, split)


def figures(labels: np.ndarray, scores: np.ndarray, threshold: float, referred: np.ndarray) -> dict[str, float | None]:
    """Operating-point figures; None where a figure is undefined (no positive case for sensitivity, ...)."""
    positive, called, kept = labels == 1, scores >= threshold, ~referred

    def rate(hits: np.ndarray, among: np.ndarray) -> float | None:
        return float((hits & among).sum() / among.sum()) if among.any() else None

    return {
        "auc": roc_auc(labels, scores) if positive.any() and not positive.all() else None,
        "accuracy": float((called == positive).mean()) if labels.size else None,
        "sensitivity": rate(called, positive), "specificity": rate(~called, ~positive),
        "referral_rate": float(referred.mean()) if labels.size else None,
        "sensitivity_non_referred": rate(called, positive & kept),
        "specificity_non_referred": rate(~called, ~positive & kept),
    }


def _with_intervals(labels: np.ndarray, scores: np.ndarray, threshold: float, referred: np.ndarray, *,
                    seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each figure as {"value", "ci95"}: the same resampling as nas.metrics.bootstrap_ci, so on a split with both
    classes the intervals equal the model card's; a figure undefined in a resample is skipped for that one."""
    point = figures(labels, scores, threshold, referred)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(RESAMPLES):
        index = rng.integers(0, labels.size, labels.size)
        for key, value in figures(labels[index], scores[index], threshold, referred[index]).items():
            if value is not None:
                draws[key].append(value)
    return {k: {"value": v, "ci95": [float(np.percentile(draws[k], 2.5)), float(np.percentile(draws[k], 97.5))]
                if v is not None and draws[k] else None} for k, v in point.items()}


def flag_rule(margin: float) -> str:
    return (f"a group is flagged when its sensitivity is more than {margin:g} below the sensitivity of all other "
            "cases pooled (point estimates at the exported threshold); a group without positive cases is not judged")


def target_rule(margin: float) -> str:
    return (f"a figure is flagged when it is more than {margin:g} off the export's own target: sensitivity below "
            f"the target sensitivity - {margin:g}, referral rate outside the asked rate +/- {margin:g} (point "
            "estimates at the exported threshold and band)")


def against_targets(metrics: dict[str, dict[str, Any]], target_sensitivity: float | None, refer_rate: float | None,
                    margin: float) -> dict[str, Any]:
    """Sensitivity and referral rate against what the export was made to hold on validation: a model far from
    its own targets on new data should not pass silently (a 0.59 sensitivity against 0.95 asked)."""
    rows = []
    for figure, target in (("sensitivity", target_sensitivity), ("referral_rate", refer_rate)):
        value = metrics[figure]["value"]
        if target is None or value is None:
            continue
        off = target - value if figure == "sensitivity" else abs(value - target)
        rows.append({"figure": figure, "value": value, "target": target, "flagged": off > margin})
    return {"rule": target_rule(margin), "margin": margin, "rows": rows,
            "flagged": [r["figure"] for r in rows if r["flagged"]]}


def subgroups(labels: np.ndarray, scores: np.ndarray, threshold: float, referred: np.ndarray,
              groups: Sequence[str | None], margin: float) -> dict[str, Any]:
    """Per-group figures with intervals, and which groups' sensitivity trails the rest by more than `margin`."""
    group_of = np.array([g if g is not None else "" for g in groups], dtype=object)
    positive, called = labels == 1, scores >= threshold
    rows = []
    for name in sorted(set(group_of) - {""}):
        inside = group_of == name
        stats = _with_intervals(labels[inside], scores[inside], threshold, referred[inside])
        rest = positive & ~inside & (group_of != "")
        sens, sens_rest = stats["sensitivity"]["value"], float(called[rest].mean()) if rest.any() else None
        gap = sens_rest - sens if sens is not None and sens_rest is not None else None
        rows.append({"group": name, "cases": int(inside.sum()), "positives": int((positive & inside).sum()),
                     **stats, "sensitivity_rest": sens_rest, "sensitivity_gap": gap,
                     "flagged": gap > margin if gap is not None else None})
    return {"rule": flag_rule(margin), "margin": margin, "rows": rows,
            "unassigned": int((group_of == "").sum()), "flagged": [r["group"] for r in rows if r["flagged"]]}


def evaluate_export(model: Path, data: str | Path | None, *, split: str = "test", groups: Path | None = None,
                    margin: float = EVALUATE_MARGIN, positive_class: str | None = None) -> dict[str, Any]:
    """The audit document `nas evaluate` prints: model identity, data, figures with intervals, calibration
    error, referral figures and (with `groups`, a CSV `input,group`) the per-group table with its flags."""
    deployed = DeployedModel.load(model)
    cases = load_cases(data, split, deployed, positive_class)
    raw_logits = logits(deployed, cases.images)
    scores, raw = calibrated_scores(raw_logits, deployed.temperature), calibrated_scores(raw_logits, 1.0)
    referred = np.asarray(in_band(scores, deployed.band), bool)
    doc: dict[str, Any] = {
        "schema_version": 1,
        "model": {"folder": str(deployed.folder), "file": deployed.file.name, "sha256": file_digest(*artifact_files(deployed.file)),
                  "runtime": deployed.runtime, "precision": deployed.io.get("precision"), "threshold": deployed.threshold,
                  "temperature": deployed.temperature, "referral_band": list(deployed.band),
                  "refer_rate": deployed.io.get("refer_rate")},
        "data": {"path": str(cases.dataset.path), "split": split, "cases": int(cases.labels.size),
                 "positives": int(cases.labels.sum()), "positive_class": cases.dataset.positive_class,
                 "fingerprint": cases.dataset.fingerprint},
        "metrics": _with_intervals(cases.labels, scores, deployed.threshold, referred),
        "calibration_error": {"bins": ECE_BINS,
                              "ece": expected_calibration_error(cases.labels, scores, bins=ECE_BINS),
                              "ece_uncalibrated": expected_calibration_error(cases.labels, raw, bins=ECE_BINS)},
    }
    doc["targets"] = against_targets(doc["metrics"], _card(deployed.folder).get("target_sensitivity"),
                                     deployed.io.get("refer_rate"), margin)
    if groups is not None:
        assigned = match_cases(read_case_csv(groups, "group"), cases.keys, what=str(groups))
        doc["groups"] = {"file": str(groups), **subgroups(cases.labels, scores, deployed.threshold, referred,
                                                          [assigned.get(k) for k in cases.keys], margin)}
    return doc


def _card(folder: Path) -> dict[str, Any]:
    """The export's model card (it holds the target sensitivity); empty for a folder without one."""
    path = Path(folder) / "model_card.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _fmt(stat: dict[str, Any] | None) -> str:
    if not stat or stat["value"] is None:
        return "n/a"
    ci = stat["ci95"]
    return f"{stat['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def summary(doc: dict[str, Any]) -> list[str]:
    """The evaluation as lines of text for the terminal."""
    m, model, data, ece = doc["metrics"], doc["model"], doc["data"], doc["calibration_error"]
    band = model["referral_band"]
    lines = [f"model {model['folder']} ({model['file']} on {model.get('runtime', 'onnxruntime')} "
             f"{model.get('precision') or ''}, sha256 {model['sha256']}, threshold {model['threshold']:.4f})",
             f"data {data['path']} split {data['split']}: {data['cases']} cases, {data['positives']} positive "
             f"({data['positive_class']}); 95% bootstrap intervals over cases",
             f"  AUC          {_fmt(m['auc'])}",
             f"  sensitivity  {_fmt(m['sensitivity'])}",
             f"  specificity  {_fmt(m['specificity'])}",
             f"  ECE ({ece['bins']} bins) {ece['ece']:.4f} calibrated (temperature {model['temperature']:.3f}), "
             f"{ece['ece_uncalibrated']:.4f} before calibration",
             f"  referral band [{band[0]:.4f}, {band[1]:.4f}] (validation rate {model['refer_rate']:g}): "
             f"referred {_fmt(m['referral_rate'])}",
             f"  non-referred sensitivity {_fmt(m['sensitivity_non_referred'])}, "
             f"specificity {_fmt(m['specificity_non_referred'])}"]
    targets = doc["targets"]
    for r in targets["rows"]:
        verdict = "FLAGGED: far from the export's target" if r["flagged"] else "ok"
        lines.append(f"  {r['figure'].replace('_', ' ')} {r['value']:.3f} against target {r['target']:g}: {verdict}")
    if targets["flagged"]:
        lines.append(f"  rule: {targets['rule']}")
    if "groups" in doc:
        g = doc["groups"]
        lines += [f"groups from {g['file']} ({g['unassigned']} case(s) without a group); rule: {g['rule']}",
                  f"  {'group':<16} {'cases':>5} {'pos':>5}  {'sensitivity':<22} {'specificity':<22} {'AUC':<22} flag"]
        for r in g["rows"]:
            flag = {True: "FLAGGED", False: "ok", None: "not judged"}[r["flagged"]]
            lines.append(f"  {r['group']:<16} {r['cases']:>5} {r['positives']:>5}  {_fmt(r['sensitivity']):<22} "
                         f"{_fmt(r['specificity']):<22} {_fmt(r['auc']):<22} {flag}")
    return lines
