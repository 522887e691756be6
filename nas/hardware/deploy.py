"""The artifact a candidate ships with its chosen runtime (settled point 19), in one place for phase 2's scoring,
`nas export`, `nas predict` and `nas evaluate`: what was measured is what is scored, exported and run.

ONNX Runtime ships the ONNX file (its QDQ version for int8); OpenVINO ships its IR (`.xml` beside its `.bin`),
converted from the same ONNX file for fp32 and quantized by NNCF for int8, on the same calibration images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nas.errors import ConfigError, TrialError
from nas.export import PARITY_ATOL
from nas.hardware.sessions import RUNTIMES, open_session

if TYPE_CHECKING:
    from torch import nn

    from nas.hardware.runtime_choice import RuntimeChoice

DEFAULT_RUNTIME = "onnxruntime"
"""What an export or a trial without a recorded choice (older results, a remote agent's) runs with."""
PREDICT_BATCH = 256

Predictor = Callable[[np.ndarray], np.ndarray]
"""Logits for float32 (N, C, H, W) inputs, in batches."""


def artifact_name(runtime: str, precision: str) -> str:
    """The deployed file's name: model.onnx / model.int8.onnx for ONNX Runtime, model.xml / model.int8.xml (the
    IR, with its .bin) for OpenVINO."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} has no CPU artifact; runtimes: {', '.join(RUNTIMES)}")
    stem = "model.int8" if precision == "int8" else "model"
    return f"{stem}.{'xml' if runtime == 'openvino' else 'onnx'}"


def artifact_files(path: Path) -> list[Path]:
    """Every file the artifact is made of: an OpenVINO IR's .xml and its .bin, else the one file."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def write_artifact(runtime: str, precision: str, float_onnx: Path, folder: Path, calibration: np.ndarray | None,
                   *, method: str = "minmax") -> Path:
    """The deployed artifact of `float_onnx` for `runtime` x `precision`, written in `folder` (the float ONNX
    itself for ONNX Runtime fp32). INT8 calibrates on `calibration` (`method` is ONNX Runtime's calibrator;
    NNCF uses its own)."""
    from nas.compress.quantize import quantize_int8, quantize_int8_openvino
    from nas.hardware.openvino_cpu import write_ir

    target = Path(folder) / artifact_name(runtime, precision)
    if precision == "int8" and calibration is None:
        raise ValueError("an INT8 artifact needs calibration images")
    if runtime == "openvino":
        if precision == "int8":
            return quantize_int8_openvino(float_onnx, target, calibration)  # type: ignore[arg-type]
        return write_ir(float_onnx, target)
    if precision == "int8":
        return quantize_int8(float_onnx, target, calibration, method=method)  # type: ignore[arg-type]
    return float_onnx


def predictor(path: Path, runtime: str = DEFAULT_RUNTIME, *, threads: int | None = None,
              batch_size: int = PREDICT_BATCH) -> Predictor:
    """`path` run with `runtime` on this CPU, in batches of `batch_size`."""
    session = open_session(path, runtime, threads=threads)

    def predict(images: np.ndarray) -> np.ndarray:
        outputs = [session(np.ascontiguousarray(images[i:i + batch_size], np.float32))
                   for i in range(0, len(images), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)

    return predict


def probability_diff(model: nn.Module, predict: Predictor, inputs: np.ndarray) -> float:
    """Max |artifact - PyTorch| of the class probabilities on `inputs`: what a clinic acts on (see
    nas.export.check_parity for why probabilities, not logits)."""
    import torch

    with torch.no_grad():
        expected = torch.softmax(model.eval()(torch.from_numpy(inputs)).double(), dim=1).numpy()
    got = torch.softmax(torch.from_numpy(predict(inputs)).double(), dim=1).numpy()
    return float(np.abs(got - expected).max())


def deployed_parity(model: nn.Module, deployed: Path, run: Predictor, runtime: str, precision: str,
                    inputs: np.ndarray) -> dict[str, object]:
    """The deployed artifact, run by its runtime, against PyTorch on real inputs. A float artifact must agree
    within PARITY_ATOL; an INT8 one is judged by its validation figures instead (its rounding is the point), so its
    difference is recorded for the card only."""
    diff = probability_diff(model, run, inputs)
    if precision == "fp32" and diff > PARITY_ATOL:
        raise TrialError(f"{deployed}: {runtime} class probabilities differ from PyTorch by up to {diff:.3g} "
                         f"(tolerance {PARITY_ATOL})")
    return {"file": deployed.name, "runtime": runtime, "precision": precision, "max_abs_diff": diff,
            "tolerance": PARITY_ATOL if precision == "fp32" else None}


def scored_artifact(choice: RuntimeChoice | None, artifact: Path | Predictor, float_onnx: Path,
                    calibration: np.ndarray | None) -> Path | Predictor:
    """What phase 2 scores: `artifact` (ONNX Runtime's deployed file) unless the candidate ships with another
    runtime's own INT8 (OpenVINO's NNCF IR), which is written beside `float_onnx` (in the trial's folder) and run
    through that runtime.

    A float artifact is the same ONNX file on every runtime (within export parity), so it is scored as is."""
    if _own_int8(choice) and isinstance(artifact, Path):
        write_artifact(choice.runtime, "int8", float_onnx, float_onnx.parent, calibration)  # type: ignore[union-attr]
    return shipped_artifact(choice, artifact)


def shipped_file(choice: RuntimeChoice | None, onnx_file: Path) -> Path:
    """The trial's file its chosen runtime runs: the runtime's own INT8 that phase 2 wrote beside `onnx_file`, else
    `onnx_file` (ONNX Runtime's, which OpenVINO also reads for fp32). What the final re-measurement times."""
    if not _own_int8(choice):
        return onnx_file
    return onnx_file.parent / artifact_name(choice.runtime, "int8")  # type: ignore[union-attr]


def shipped_artifact(choice: RuntimeChoice | None, artifact: Path | Predictor) -> Path | Predictor:
    """`artifact` (a trial's deployed ONNX file or predictor) as its chosen runtime runs it: what is scored on
    validation and test."""
    if not isinstance(artifact, Path) or not _own_int8(choice):
        return artifact
    return predictor(shipped_file(choice, artifact), choice.runtime)  # type: ignore[union-attr]


def _own_int8(choice: RuntimeChoice | None) -> bool:
    """The choice is a runtime whose INT8 is its own artifact (OpenVINO's NNCF IR), not ONNX Runtime's QDQ file."""
    return choice is not None and choice.runtime != DEFAULT_RUNTIME and choice.precision == "int8"
