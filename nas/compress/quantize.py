"""INT8 post-training static quantization: onnxruntime.quantization (QDQ, per-channel weights) for ONNX Runtime,
NNCF for OpenVINO.

The float ONNX is pre-processed by ONNX Runtime (shape inference, graph optimisation), then activations are
calibrated on a fixed number of training images: the scales only have to cover what the model will see.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static,
)

from nas.errors import TrialError

CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 32
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self._feeds = iter({input_name: images[i:i + CALIBRATION_BATCH]}
                           for i in range(0, len(images), CALIBRATION_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_int8(float_onnx: Path, out: Path, calibration: np.ndarray, *, input_name: str = "input",
                  method: str = "minmax") -> Path:
    """Write the INT8 (QDQ) version of `float_onnx` to `out`, calibrated on float32 `calibration` inputs.

    Weights use 7 bits (`reduce_range`): ONNX Runtime runs uint8 activations x int8 weights with an instruction
    that adds pairs of products in 16 bits on x86 CPUs without VNNI (AVX2, AVX-512 before VNNI), which saturates
    on full-range inputs. Measured on a 3-epoch dsconv model on this AMD EPYC (AVX2, no VNNI): validation AUC
    0.9835 float, 0.9301 INT8 with 8-bit weights (the loss came from the stem convolution alone, whose uint8 input
    spans the full pixel range: its weights or its input rounded in float cost nothing), 0.9833 with 7-bit weights.
    The artifact may run on any x86 CPU, so the safe form is the only form.
    """
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="nas-quant-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(float_onnx), str(prepared))
            # The entropy and percentile calibrators print progress to stdout, which belongs to --json output.
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(
                    str(prepared), str(out), _Batches(input_name, calibration[:CALIBRATION_IMAGES]),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=METHODS[method], reduce_range=True,
                    nodes_to_exclude=output_nodes(prepared),
                )
    except Exception as exc:  # onnxruntime.quantization raises many types for one model that cannot be quantized
        raise TrialError(f"INT8 quantization of {float_onnx} failed: {type(exc).__name__}: {exc}") from exc
    return out


def output_nodes(onnx_path: Path) -> list[str]:
    """The nodes writing the model's outputs (the classifier head), which INT8 leaves in float.

    Quantized, the head's output (the logits) is rounded to 256 levels over the logits' whole range, while the
    positive-minus-negative difference a score and an AUC rank on can span a small part of it: measured on a
    1-epoch dsconv model, 524 validation cases got 11 distinct INT8 scores (ties) and AUC moved by up to 0.02 with
    the calibration set alone; with the head float, 524 distinct scores. NNCF, which OpenVINO's INT8 uses, leaves
    the last layer's output unquantized too. The head is one small matrix product, so its speed does not change.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if outputs & set(n.output)]


def quantize_int8_openvino(float_onnx: Path, out: Path, calibration: np.ndarray) -> Path:
    """Write OpenVINO's INT8 IR (`out` .xml beside its .bin) of `float_onnx`, through NNCF's post-training
    quantization (OpenVINO's own tooling) on the same calibration inputs as `quantize_int8`."""
    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.ERROR)
    images = calibration[:CALIBRATION_IMAGES]
    batches = [images[i:i + 1] for i in range(len(images))]  # OpenVINO's model takes the batch it was traced at
    try:
        model = ov.Core().read_model(str(float_onnx))
        model.reshape({model.inputs[0]: [1, *images.shape[1:]]})
        # NNCF draws progress bars on stdout, which belongs to --json output.
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
        quantized.reshape({quantized.inputs[0]: [-1, *images.shape[1:]]})  # any batch, as the ONNX file
        ov.save_model(quantized, str(out), compress_to_fp16=False)
    except Exception as exc:  # NNCF and OpenVINO raise many types for one model that cannot be quantized
        raise TrialError(f"OpenVINO INT8 quantization of {float_onnx} failed: {type(exc).__name__}: {exc}") from exc
    return out
