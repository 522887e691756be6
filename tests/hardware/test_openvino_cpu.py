"""The OpenVINO CPU backend: the same outputs as ONNX Runtime on one ONNX file, and timings with the same
protocol and provenance."""

import math

import numpy as np
import pytest
import yaml

from nas.compress.quantize import quantize_int8, quantize_int8_openvino
from nas.export import to_onnx
from nas.hardware import load_profile, measure
from nas.hardware.sessions import open_session
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

QUICK = {
    "name": "quick-cpu-both", "description": "both CPU runtimes, a protocol short enough for tests",
    "backend": "onnxruntime", "runtimes": ["onnxruntime", "openvino"], "precisions": ["fp32", "int8"],
    "threads": 1,
    "protocol": {"warmup_runs": 2, "warmup_s": 0, "min_runs": 20, "min_seconds": 0.05, "throughput_min_runs": 3,
                 "throughput_min_seconds": 0.01, "quiet_wait_s": 1.0},
}
SPEC = Spec(family="dsconv", arch={"stem_width": 8, "stem_stride": 2, "se": False, "activation": "relu",
                                   "dropout": 0.0, "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}]},
            input_size=28, in_channels=1, num_classes=2,
            training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0))


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "quick-cpu-both.yaml"
    path.write_text(yaml.safe_dump(QUICK))
    return load_profile(str(path))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return to_onnx(create_model(SPEC).eval(), SPEC.input_shape, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((16, *SPEC.input_shape)).astype(np.float32)


def test_openvino_matches_onnxruntime(onnx_file, images):
    ort_out = open_session(onnx_file, "onnxruntime")(images)
    ov_out = open_session(onnx_file, "openvino")(images)
    assert ov_out.shape == ort_out.shape == (16, 2)
    np.testing.assert_allclose(ov_out, ort_out, rtol=1e-3, atol=1e-4)


def test_openvino_timing_has_provenance(profile, onnx_file):
    m = measure(onnx_file, profile.model_copy(update={"backend": "openvino"}), "fp32", SPEC.input_shape)
    assert (m.backend, m.precision, m.batch, m.threads, m.method) == ("openvino", "fp32", 1, 1, "measured")
    assert m.runtime_version.startswith("OpenVINO 20")
    assert m.runs >= 20 and all(math.isfinite(v) and v > 0 for v in (m.p50_ms, m.p95_ms, m.p99_ms))
    assert m.throughput_batch == profile.throughput_batch and m.throughput_ips > 0
    assert m.disturbance is not None and m.disturbance.quiet_reference_ms > 0


def test_nncf_int8_runs_on_openvino(profile, onnx_file, images, tmp_path):
    """NNCF's INT8 IR, calibrated on the images ONNX Runtime's INT8 is, keeps the float model's outputs close and
    is timed as int8."""
    ir = quantize_int8_openvino(onnx_file, tmp_path / "int8.xml", images)
    assert ir.with_suffix(".bin").exists()
    ov_int8 = open_session(ir, "openvino")(images)
    ort_int8 = open_session(quantize_int8(onnx_file, tmp_path / "int8.onnx", images), "onnxruntime")(images)
    fp32 = open_session(onnx_file, "onnxruntime")(images)
    scale = np.abs(fp32).max()
    assert np.abs(ov_int8 - fp32).max() < 0.1 * scale
    assert np.abs(ort_int8 - fp32).max() < 0.1 * scale
    m = measure(ir, profile.model_copy(update={"backend": "openvino"}), "int8", SPEC.input_shape)
    assert (m.backend, m.precision) == ("openvino", "int8")
    assert m.model_bytes > ir.stat().st_size  # the IR's weights (.bin) count
