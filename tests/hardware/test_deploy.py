"""The artifact a candidate ships with its chosen runtime: written, run by that runtime, and what phase 2 scores."""

import numpy as np
import pytest
import torch

from nas.export import to_onnx
from nas.hardware.deploy import (
    artifact_files, predictor, probability_diff, scored_artifact, shipped_artifact, shipped_file, write_artifact,
)
from nas.hardware.runtime_choice import RuntimeChoice, RuntimeTiming
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

SPEC = Spec(family="dsconv", arch={"stem_width": 8, "stem_stride": 2, "se": False, "activation": "relu",
                                   "dropout": 0.0, "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}]},
            input_size=28, in_channels=1, num_classes=2,
            training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(SPEC).eval()


@pytest.fixture(scope="module")
def float_onnx(model, tmp_path_factory):
    return to_onnx(model, SPEC.input_shape, tmp_path_factory.mktemp("deploy") / "model.fp32.onnx")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((40, *SPEC.input_shape)).astype(np.float32)


def _choice(runtime, precision):
    return RuntimeChoice(runtime=runtime, precision=precision, reason="fixed", timings=[
        RuntimeTiming(runtime=runtime, precision=precision, skipped="fixed for the test")])


def test_openvino_fp32_ir_matches_pytorch(model, float_onnx, images, tmp_path):
    ir = write_artifact("openvino", "fp32", float_onnx, tmp_path, None)
    assert [f.name for f in artifact_files(ir)] == ["model.xml", "model.bin"] and all(f.is_file() for f in
                                                                                    artifact_files(ir))
    run = predictor(ir, "openvino", batch_size=16)  # 40 images: three batches, the last one short
    assert run(images).shape == (40, 2)
    assert probability_diff(model, run, images) < 1e-4


def test_onnxruntime_fp32_ships_the_float_file(float_onnx, tmp_path):
    assert write_artifact("onnxruntime", "fp32", float_onnx, tmp_path, None) == float_onnx


def test_phase2_scores_openvino_int8_when_it_was_chosen(model, float_onnx, images):
    """An OpenVINO int8 choice is scored on NNCF's IR run by OpenVINO, not on ONNX Runtime's QDQ file."""
    qdq = float_onnx.parent / "model.onnx"  # stands for the trial's ONNX Runtime artifact: returned untouched
    assert scored_artifact(_choice("onnxruntime", "int8"), qdq, float_onnx, images) == qdq
    assert scored_artifact(_choice("openvino", "fp32"), qdq, float_onnx, None) == qdq
    scored = scored_artifact(_choice("openvino", "int8"), qdq, float_onnx, images)
    assert callable(scored) and (float_onnx.parent / "model.int8.xml").is_file()
    logits = scored(images)
    assert logits.shape == (40, 2) and np.isfinite(logits).all()
    assert probability_diff(model, scored, images) < 0.1  # quantized: close to the float model, not equal
    # The final re-measurement times, and the test split scores, that same IR with OpenVINO.
    assert shipped_file(_choice("openvino", "int8"), qdq) == float_onnx.parent / "model.int8.xml"
    assert shipped_file(_choice("onnxruntime", "int8"), qdq) == shipped_file(_choice("openvino", "fp32"), qdq) == qdq
    np.testing.assert_array_equal(shipped_artifact(_choice("openvino", "int8"), qdq)(images), logits)
