"""TensorRT engines from exported ONNX files: run where TensorRT and a GPU exist, skipped elsewhere with the reason."""

from __future__ import annotations

import pytest
import torch

from nas.errors import NasError
from nas.export import to_onnx
from nas.hardware.tensorrt_engine import build_engine, import_tensorrt
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

try:
    import tensorrt  # noqa: F401

    TENSORRT = torch.cuda.is_available()
except ImportError:
    TENSORRT = False

needs_tensorrt = pytest.mark.skipif(not TENSORRT, reason="needs TensorRT and an NVIDIA GPU (pip install 'nas[tensorrt]')")

SPEC = Spec(family="dsconv", input_size=28, in_channels=1, num_classes=2,
            training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0),
            arch={"stem_width": 8, "stem_stride": 2, "se": False, "activation": "relu", "dropout": 0.0,
                  "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}]})


@pytest.mark.skipif(TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_message_says_how_to_get_it():
    with pytest.raises(NasError, match=r"TensorRT is not installed here .*pip install 'nas\[tensorrt\]'"):
        import_tensorrt()


@pytest.mark.tensorrt
@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_an_engine_is_built_and_deserialises(precision, tmp_path):
    import tensorrt as trt

    onnx_path = to_onnx(create_model(SPEC), SPEC.input_shape, tmp_path / "model.onnx")
    info = build_engine(onnx_path, tmp_path / "model.engine", precision=precision, input_shape=SPEC.input_shape)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine((tmp_path / "model.engine").read_bytes())
    assert engine is not None and info["precision"] == precision and info["tensorrt_version"] == trt.__version__
