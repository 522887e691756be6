"""`nas measure` times a model on every runtime the profile lists, and labels an INT8 file int8 (issue 19)."""

import json

import numpy as np
import torch
import yaml

from nas.compress.quantize import quantize_int8
from nas.export import to_onnx
from conftest import REPO, run_nas


def _profile(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({
        "name": "both-quick", "description": "both CPU runtimes, quick", "backend": "onnxruntime",
        "runtimes": ["onnxruntime", "openvino"], "precisions": ["fp32", "int8"], "threads": 1, "throughput_batch": 2,
        "protocol": {"warmup_runs": 2, "warmup_s": 0, "min_runs": 20, "min_seconds": 0.05,
                     "throughput_min_runs": 3, "throughput_min_seconds": 0.01, "quiet_wait_s": 1.0}}))
    return path


def test_measure_every_runtime_and_int8_label(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    fp32 = to_onnx(model, (1, 28, 28), tmp_path / "m.onnx")
    int8 = quantize_int8(fp32, tmp_path / "m.int8.onnx",
                         np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32))
    proc = run_nas("measure", str(int8), "--hardware", str(_profile(tmp_path)), "--json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [m["backend"] for m in doc["runtimes"]] == ["onnxruntime", "openvino"]
    assert {m["precision"] for m in doc["runtimes"]} == {"int8"}
    assert doc["measurement"] == doc["runtimes"][0]
    assert doc["fastest"] in ("onnxruntime", "openvino")
    proc = run_nas("measure", str(fp32), "--hardware", str(_profile(tmp_path)), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout and "OpenVINO" in proc.stdout and "fp32" in proc.stdout
    assert "fastest:" in proc.stdout


def test_measure_an_export_folders_openvino_ir(tmp_path):
    """A folder `nas export` wrote is measured as it ships: its IR, on OpenVINO only (ONNX Runtime cannot load it)."""
    from nas.hardware.openvino_cpu import write_ir

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    folder = tmp_path / "shipped"
    folder.mkdir()
    write_ir(to_onnx(model, (1, 28, 28), tmp_path / "m.onnx"), folder / "model.xml")
    (folder / "io.json").write_text(json.dumps({"file": "model.xml", "runtime": "openvino", "precision": "fp32",
                                                "input_shape": ["batch", 1, 28, 28]}))
    proc = run_nas("measure", str(folder), "--hardware", str(_profile(tmp_path)), "--json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["model"].endswith("model.xml") and doc["input_shape"] == [1, 28, 28]
    assert [(m["backend"], m["precision"]) for m in doc["runtimes"]] == [("openvino", "fp32")]
    (folder / "io.json").unlink()
    proc = run_nas("measure", str(folder), "--hardware", str(_profile(tmp_path)), cwd=REPO)
    assert proc.returncode == 2 and "without io.json" in proc.stderr
