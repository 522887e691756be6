"""`nas export`: a chosen trial as a deployable folder (ONNX, spec, weights, model card), verified."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nas._io import write_json
from nas.errors import StudyError
from nas.export import check_parity, preprocessing, to_onnx
from nas.report.model_card import write_model_card
from nas.search.result import TrialResult
from nas.data import Dataset
from nas.search.trial import load_model
from nas.tasks import Task, get_task


def trial_dir(results: Path, study: str, trial: int) -> Path:
    study_dir = Path(results) / study
    if not (study_dir / "trials").is_dir():
        studies = sorted(p.name for p in Path(results).glob("*") if (p / "trials").is_dir())
        raise StudyError(f"no study {study!r} under {results}/; studies there: {', '.join(studies) or 'none'}")
    folder = study_dir / "trials" / str(trial)
    if not folder.is_dir():
        trials = sorted((int(p.name) for p in (study_dir / "trials").iterdir() if p.name.isdigit()))
        raise StudyError(f"study {study!r} has no trial {trial}; trials: {', '.join(map(str, trials))}")
    return folder


def load_result(folder: Path, study: str, trial: int) -> TrialResult:
    for name, why in (("failure.json", "failed"), ("infeasible.json", "was stopped before training (infeasible)")):
        if (folder / name).exists():
            reason = json.loads((folder / name).read_text())["reason"]
            raise StudyError(f"trial {trial} of {study!r} {why}: {reason}; it cannot be exported")
    if not (folder / "result.json").exists():
        raise StudyError(f"trial {trial} of {study!r} has not finished; it cannot be exported yet")
    return TrialResult.model_validate_json((folder / "result.json").read_text())


def study_dataset(study_dir: Path, data: str | None) -> tuple[Task, Dataset]:
    """The study's task and data (or `data`, which must be the same data, e.g. moved to another path)."""
    settings = json.loads((study_dir / "settings.json").read_text())
    task = get_task(settings["task"])
    path = data or settings["data"]
    if not Path(path).exists():
        raise StudyError(f"the study's data {path} is not on this machine; pass --data with its path here")
    dataset = task.load_data(path)
    if dataset.fingerprint != settings["data_fingerprint"]:
        raise StudyError(f"{path} is not the data study {study_dir.name!r} was trained on (fingerprint differs)")
    return task, dataset


def export_trial(results: Path, study: str, trial: int, out: Path, *, data: str | None = None) -> dict[str, Any]:
    """Rebuild the trial's model from its spec and weights, export and verify ONNX, write the model card."""
    folder = trial_dir(results, study, trial)
    result = load_result(folder, study, trial)
    weights = folder / "model.pt"
    if not weights.exists():
        pareto = Path(results) / study / "pareto.json"
        kept = [m["trial"] for m in json.loads(pareto.read_text())["members"]] if pareto.exists() else []
        raise StudyError(f"trial {trial}'s weights were not kept (only front members and baselines keep theirs; "
                         f"run the search with --keep-artifacts all to keep every trial's); front: {kept}")
    spec = result.spec
    task, dataset = study_dataset(Path(results) / study, data)
    model = load_model(spec, weights)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = to_onnx(model, spec.input_shape, out / "model.onnx")
    diff = check_parity(model, onnx_path, task.sample_inputs(spec, dataset))
    (out / "spec.json").write_text(spec.to_json())
    shutil.copyfile(weights, out / "model.pt")
    study_dir = Path(results) / study
    settings = json.loads((study_dir / "settings.json").read_text())
    test_path = folder / "test_metrics.json"
    remeasured = folder / "remeasured.json"
    latency = json.loads(remeasured.read_text()) if remeasured.exists() else result.measurement.model_dump()
    card = {
        "study": study, "trial": trial, "task": settings["task"], "summary": spec.summary(),
        "spec": spec.model_dump(mode="json"), "params": result.params, "macs": result.macs,
        "metrics": {"val": result.metrics["val"], **({"test": json.loads(test_path.read_text())} if test_path.exists() else {})},
        "target_sensitivity": settings["target_sensitivity"], "threshold": result.metrics["val"]["threshold"],
        "latency": latency, "preprocessing": preprocessing(spec.input_size, spec.in_channels),
        "data": dataset.describe(), "parity_max_abs_diff": diff,
        "files": ["model.onnx", "model.pt", "spec.json", "model_card.md", "model_card.json"],
    }
    write_model_card(out, card)
    return card
