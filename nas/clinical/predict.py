"""`nas predict`: an exported model scoring a clinic's files, one row per input, as the deployment runs it.

The deployed artifact (io.json "file": the INT8 ONNX, or OpenVINO's IR, when that was exported) runs with the
runtime io.json names (the one the search chose for it; ONNX Runtime for exports older than that); its logits are
divided by the export's temperature, so the score is the calibrated positive-class probability, compared with
the export's threshold (decision) and referral band (refer). A file that cannot be used gives a row with the
reason instead of stopping the run.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nas.clinical.calibration import calibrated_scores, in_band
from nas.clinical.inputs import Preprocessing, find_inputs, read_image
from nas.errors import DataError, NasError, StudyError
from nas.hardware.deploy import DEFAULT_RUNTIME, artifact_files
from nas.hardware.sessions import RUNTIMES, Session, open_session
from nas.tasks import get_task

__all__ = ["ROW_FIELDS", "DeployedModel", "Prediction", "predict"]

ROW_FIELDS = ("input", "sop_instance_uid", "score", "decision", "refer", "ms", "heatmap", "error")
"""The columns of a prediction row, in CSV order (what the shadow log reads: input, score, decision, refer, ms)."""


@dataclass(frozen=True)
class DeployedModel:
    """An export folder ready to score: its io.json contract, its deployed file and the runtime that runs it."""

    folder: Path
    io: dict[str, Any]
    temperature: float
    threshold: float
    band: tuple[float, float]
    modalities: tuple[str, ...]
    preprocessing: Preprocessing | None
    reader: Callable[[Path], np.ndarray] | None = None
    """The task's own input reader (a NIfTI volume, say), when its exports take no picture or DICOM image."""

    @classmethod
    def load(cls, folder: Path) -> DeployedModel:
        """The export in `folder`; an older export without calibration is refused, since its scores would not be
        the probabilities its threshold and referral band are defined on."""
        folder = Path(folder)
        io_path = folder / "io.json"
        if not io_path.is_file():
            raise DataError(f"{folder}: no io.json; --model takes the folder `nas export` wrote")
        io = json.loads(io_path.read_text())
        missing = [key for key in ("file", "calibration", "threshold", "referral_band") if key not in io]
        if missing:
            raise StudyError(f"{io_path} has no {', '.join(missing)}: it was exported before calibration and "
                             f"referral were added; re-export it with `nas export{_export_args(folder)}`")
        missing_files = [f.name for f in artifact_files(folder / io["file"]) if not f.is_file()]
        if missing_files:
            raise DataError(f"{io_path}: deployed file {', '.join(map(repr, missing_files))} is not in {folder}")
        if io.get("runtime", DEFAULT_RUNTIME) not in RUNTIMES:
            raise StudyError(f"{io_path}: runtime {io['runtime']!r} cannot run here; runtimes: {', '.join(RUNTIMES)}")
        low, high = io["referral_band"]
        reader = get_task(io["task"]).input_reader(io) if "task" in io else None
        return cls(folder, io, float(io["calibration"]["temperature"]), float(io["threshold"]),
                   (float(low), float(high)), tuple(io.get("modality", ())),
                   None if reader else Preprocessing.from_io(io, io_path), reader)

    @property
    def file(self) -> Path:
        return self.folder / self.io["file"]

    @property
    def runtime(self) -> str:
        """The runtime the export ships with (settled point 19)."""
        return str(self.io.get("runtime", DEFAULT_RUNTIME))

    def session(self) -> Session:
        """The deployed file run with its runtime, on this CPU."""
        return open_session(self.file, self.runtime)


def _export_args(folder: Path) -> str:
    """` --study S --trial N --out DIR` when the model card says where the export came from."""
    card = folder / "model_card.json"
    if not card.is_file():
        return f" --out {folder}"
    doc = json.loads(card.read_text())
    return f" --study {doc.get('study', 'STUDY')} --trial {doc.get('trial', 'N')} --out {folder}"


@dataclass(frozen=True)
class Prediction:
    """One input's row. Error rows carry only `input` and `error`; nothing identifying a patient is kept."""

    input: str
    sop_instance_uid: str | None = None
    score: float | None = None
    decision: int | None = None
    """1: positive (the abnormal class) at the export's threshold; 0: negative."""
    refer: bool | None = None
    """True when the score lies in the referral band: a reader decides this case."""
    ms: float | None = None
    """Reading, pre-processing and inference time for this input (heatmap excluded)."""
    heatmap: str | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


def predict(
    model: DeployedModel, paths: Sequence[Path], *, heatmaps: Path | None = None, progress: bool = True,
) -> list[Prediction]:
    """Score every PNG / JPEG / DICOM file in `paths` (folders searched recursively), in order, one at a time.

    With `heatmaps`, a Grad-CAM overlay per scored input is written there (see nas.clinical.heatmap).
    """
    files = find_inputs(paths)
    if not files:
        raise DataError(f"no files found in {', '.join(map(str, paths))} (PNG, JPEG or DICOM files or folders)")
    session = model.session()
    session(np.zeros((1, *model.io["input_shape"][1:]), np.float32))  # the first call compiles; not a patient's
    explainer = None
    if heatmaps is not None:
        from nas.clinical.heatmap import Explainer, overlay_paths

        explainer = Explainer.from_export(model.folder, model.io)
        targets = overlay_paths(files, Path(heatmaps))
    out: list[Prediction] = []
    for index, path in enumerate(tqdm(files, desc="predict", unit="image", file=sys.stderr, disable=not progress)):
        start = time.perf_counter()
        try:
            image = None if model.reader else read_image(path, model.modalities)
            x = model.reader(path)[None] if model.reader else model.preprocessing(image)[None]  # type: ignore[misc]
            score = float(calibrated_scores(session(np.ascontiguousarray(x, np.float32)), model.temperature)[0])
        except NasError as exc:
            out.append(Prediction(str(path), error=str(exc)))
            continue
        except Exception as exc:  # whatever one input makes pre-processing or the runtime raise costs its row only
            out.append(Prediction(str(path), error=f"{path}: cannot be scored ({type(exc).__name__}: {exc})"))
            continue
        ms = (time.perf_counter() - start) * 1e3
        overlay = None
        if explainer is not None:
            overlay = str(explainer.save(image, x, score, targets[index]))
        uid = image.sop_instance_uid if image else None
        out.append(Prediction(str(path), uid, score, int(score >= model.threshold),
                              bool(in_band(score, model.band)), ms, overlay))
    return out
