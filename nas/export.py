"""PyTorch -> ONNX, and the check that the ONNX file computes what the PyTorch model computes.

One exporter choice for the whole product: the TorchScript-based exporter (`dynamo=False`). Measured here with
torch 2.14.1 it exports MobileNetV3-Small in 0.15 s against 2-3 s for the torch.export-based one, and a search
exports twice per trial. It is deprecated upstream; torch is pinned, and switching is this one constant.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nas._io import atomic_write_bytes
from nas.errors import TrialError

if TYPE_CHECKING:  # torch and ONNX Runtime load where a model is exported or run, not to list tasks
    import onnxruntime as ort
    import torch
    from torch import nn

USE_DYNAMO_EXPORTER = False
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_ATOL = 1e-3
"""Largest allowed difference between the ONNX and PyTorch positive-class probabilities on real images."""


def to_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export in eval mode with a dynamic batch axis (batch-1 latency and batch-N throughput use one file)."""
    import torch

    model = model.eval()
    example = torch.zeros(1, *input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model, (example,), buffer, dynamo=USE_DYNAMO_EXPORTER, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        except Exception as exc:  # exporter errors come in many types; all mean this model cannot ship
            raise TrialError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    return atomic_write_bytes(path, buffer.getvalue())


def onnx_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for float32 (N, C, H, W) inputs, run in batches."""
    name = session.get_inputs()[0].name
    outputs = [session.run(None, {name: images[i:i + batch_size]})[0] for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


Predictor = Callable[[np.ndarray], np.ndarray]
"""Logits for float32 (N, C, H, W) inputs: how a deployed artifact that is not an ONNX file is scored."""


def half_precision_predictor(model: nn.Module, batch_size: int = 256) -> Predictor:
    """The model as an fp16 runtime runs it: weights and activations in half precision (on CUDA when present).

    fp16 ships to runtimes that convert the float model themselves (TensorRT, torch-cuda); this is the accuracy
    they give, computed with real fp16 arithmetic rather than assumed equal to fp32.
    """
    import torch

    return torch_predictor(model, torch.float16, "cuda" if torch.cuda.is_available() else "cpu", batch_size)


def torch_predictor(model: nn.Module, dtype: torch.dtype | None = None, device: str = "cpu",
                    batch_size: int = 256) -> Predictor:
    """The PyTorch model itself as a predictor (a copy, so training can go on): scoring without an export, as a
    multi-fidelity rung does. `dtype` None: float32."""
    import torch

    dtype = dtype or torch.float32
    module = copy.deepcopy(model).eval().to(device, dtype)

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([
                module(torch.from_numpy(images[i:i + batch_size]).to(device, dtype)).float().cpu().numpy()
                for i in range(0, len(images), batch_size)])

    return predict


def _probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def check_parity(model: nn.Module, onnx_path: Path, inputs: torch.Tensor) -> float:
    """Max |ONNX - PyTorch| of the class probabilities; raises above PARITY_ATOL.

    Probabilities, on real pre-processed images, because that is what a clinic acts on. A trained EfficientNet at
    28x28 has BatchNorm variances near 1e-10, which ONNX Runtime folds into convolution weights scaled by ~300:
    float rounding then moves logits by 1e-2 (seen here) while every probability agrees to 1e-4. A wrong export
    (another op, other weights) moves probabilities by far more than 1e-3.
    """
    import torch

    with torch.no_grad():
        expected = _probabilities(model.eval()(inputs).numpy().astype(np.float64))
    got = _probabilities(onnx_predict(onnx_session(onnx_path), inputs.numpy()).astype(np.float64))
    diff = float(np.abs(got - expected).max())
    if diff > PARITY_ATOL:
        raise TrialError(f"{onnx_path}: ONNX class probabilities differ from PyTorch by up to {diff:.3g} "
                         f"(tolerance {PARITY_ATOL})")
    return diff


@dataclass(frozen=True)
class Normalisation:
    """How a task turns raw values into model inputs, which every deployment must repeat: `source` says what the
    raw value is scaled to (8-bit pixels to [0, 1], Hounsfield units to a window), then (x - mean) / std. A task
    states it and hands it down to the export; nothing below the task knows a task's numbers."""

    mean: float
    std: float
    source: str = "pixel / 255"


def image_inputs(images: np.ndarray, input_size: int, normalisation: Normalisation) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float32 at `input_size` (bilinear, antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float().div_(255.0)
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False,
                          antialias=input_size < x.shape[-1])
    return x.sub_(normalisation.mean).div_(normalisation.std).contiguous()


def preprocessing(input_shape: tuple[int, ...], normalisation: Normalisation) -> dict[str, object]:
    """What a deployment must do to an image (C, H, W) or a volume (C, D, H, W) before the model sees it."""
    channels, *spatial = input_shape
    return {
        "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
        "input_shape": ["batch", channels, *spatial], "dtype": "float32",
        "channels": "grey" if channels == 1 else "RGB", "layout": "NCHW" if len(spatial) == 2 else "NCDHW",
        "resize": f"{'bilinear' if len(spatial) == 2 else 'trilinear'} to {'x'.join(map(str, spatial))}",
        "normalise": f"{normalisation.source}, then (x - {normalisation.mean}) / {normalisation.std}",
        "mean": normalisation.mean, "std": normalisation.std,
        "output": "logits for [negative, positive]; score = softmax(logits)[1]",
    }
