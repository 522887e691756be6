"""The measured calibration's pieces that need no timing: distinct candidates, a second timing's fresh bytes, and
the held-out score and noise ceiling on fixed numbers."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from nas.hardware import Measurement
from nas.hardware.predictor import CalibrationPoint, KernelFeatures, fit_predictor
from nas.search.calibration import MeasuredCandidate, fresh_copy, noise_ceiling, sample_specs, score, shape_key
from nas.spaces import load_space


def test_candidates_are_distinct_models_at_the_asked_precision():
    specs = sample_specs(load_space("xray-tiny"), 8, seed=3, precision="int8")
    assert len(specs) == 8 and len({shape_key(s) for s in specs}) == 8
    assert all(s.compression.quant == "int8" for s in specs)
    distilled = specs[0].model_copy(update={"compression": specs[0].compression.model_copy(
        update={"distill": True, "temperature": 7.0})})
    assert shape_key(distilled) == shape_key(specs[0])  # distillation changes training, not the graph timed


def test_a_second_timing_sends_the_same_graph_under_new_bytes(tmp_path):
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, 8, 8]) for n in ("input", "output")]
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "g", io[:1],
                                                io[1:]), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    copy = fresh_copy(path)
    assert copy != path and copy.read_bytes() != path.read_bytes()
    assert onnx.load(str(copy)).graph == onnx.load(str(path)).graph


def candidate(name: str, kernels: float, ms: float, again: float | None = None) -> MeasuredCandidate:
    def record(p50: float) -> Measurement:
        return Measurement(p50_ms=p50, p95_ms=p50, p99_ms=p50, mean_ms=p50, cv=0.0, runs=1, seconds=0.0,
                           throughput_ips=None, throughput_batch=None, peak_memory_mb=0.0, model_bytes=1,
                           backend="onnxruntime", runtime_version="onnxruntime 1.32.0", device="cpu",
                           precision="fp32", batch=1, threads=2, method="measured", load_avg=0.0)

    return MeasuredCandidate(name, name, KernelFeatures({"conv1x1": (kernels, 0.0, 0.0)}), record(ms),
                             Path(f"{name}.onnx"), (1, 28, 28), remeasured=record(again) if again else None)


def test_the_held_out_score_and_the_noise_ceiling_on_fixed_numbers():
    fitted = [candidate(f"f{k}", k, 0.01 + 0.002 * k) for k in (1, 3, 5, 8)]  # 0.01 ms per call, 2 us per kernel
    predictor = fit_predictor([CalibrationPoint(c.name, c.features, c.ms) for c in fitted])
    held = [candidate("a", 2, 0.014, 0.0142), candidate("b", 4, 0.018 * 1.2, 0.018 * 1.5),
            candidate("c", 6, 0.022 * 0.8), candidate("d", 10, 0.030)]
    s = score(predictor, held)
    assert s.within == pytest.approx(0.5) and s.spearman == pytest.approx(0.8)  # b and c swap places
    assert s.median_abs_error == pytest.approx((1 - 1 / 1.2) / 2, rel=1e-3)  # errors 0, 0, 1/6, 1/4
    noise = noise_ceiling(held)
    assert noise["pairs"] == 2 and noise["within_10pct"] == pytest.approx(0.5)
    assert noise_ceiling(held[2:]) == {"pairs": 0, "within_10pct": None, "median_abs_difference": None}
