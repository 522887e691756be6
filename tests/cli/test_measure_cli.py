"""`nas measure MODEL.onnx`: one model's latency record, measured here or estimated for a device out of reach."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import QUICK_PROFILE, run_nas
from nas.export import to_onnx
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

SPEC = Spec(
    family="dsconv", input_size=28, in_channels=1, num_classes=2,
    arch={"stem_width": 8, "stem_stride": 2, "se": False, "activation": "relu", "dropout": 0.0,
          "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}]},
    training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0),
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return to_onnx(create_model(SPEC), tuple(SPEC.input_shape), tmp_path_factory.mktemp("measure") / "model.onnx")


def test_measured_here_under_the_profile(model, tmp_path):
    proc = run_nas("measure", str(model), "--hardware", str(QUICK_PROFILE), "--batch", "2", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["hardware"] == "cpu-quick" and doc["input_shape"] == [1, 28, 28]
    m = doc["measurement"]
    assert (m["method"], m["backend"], m["precision"], m["batch"]) == ("measured", "onnxruntime", "fp32", 2)
    assert 0 < m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"] and m["runs"] >= 30  # the quick protocol's minimum
    assert m["model_bytes"] == model.stat().st_size
    text = run_nas("measure", str(model), "--hardware", str(QUICK_PROFILE), cwd=tmp_path)
    assert text.returncode == 0 and text.stdout.startswith(f"{model}: p50 ") and "measured on" in text.stdout


def test_an_unreachable_jetson_is_estimated_only_when_allowed(model, tmp_path):
    refused = run_nas("measure", str(model), "--hardware", "jetson-orin-nano", cwd=tmp_path)
    assert refused.returncode == 2 and "--allow-estimate" in refused.stderr
    proc = run_nas("measure", str(model), "--hardware", "jetson-orin-nano", "--precision", "fp16",
                   "--allow-estimate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(ESTIMATED)" in proc.stdout and "estimated on NVIDIA Jetson Orin Nano" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["missing.onnx"], "no such ONNX file"),
    (["MODEL", "--precision", "fp16"], "--precision fp16 is not one of profile 'cpu-quick'"),
    (["MODEL", "--batch", "0"], "--batch must be at least 1"),
])
def test_bad_input_is_one_line_naming_the_value(model, tmp_path, args, message):
    args = [str(model) if a == "MODEL" else a for a in args]
    proc = run_nas("measure", *args, "--hardware", str(QUICK_PROFILE), cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1
