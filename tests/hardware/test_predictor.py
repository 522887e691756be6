"""The latency predictor: the kernels it reads, its fit on known per-kernel costs, its labels and its file."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nas.errors import ConfigError
from nas.hardware.predictor import (FEATURES, CalibrationPoint, LatencyPredictor, PredictorProvenance, features_of,
                                    fit_predictor, kernel_features, predictor_path)


def conv_graph(path, layers: list[tuple[str, int]], *, channels: int, size: int, bn_relu: bool = False):
    """A chain of convolutions, each ('pw', out channels) pointwise or ('dw', k) depthwise, saved to `path`."""
    rng = np.random.default_rng(len(layers) + channels + size)
    nodes, inits, x, c = [], [], "input", channels
    for i, (kind, arg) in enumerate(layers):
        out_c, k, group = (arg, 1, 1) if kind == "pw" else (c, arg, c)
        weight = rng.standard_normal((out_c, c // group, k, k)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"conv{i}"], group=group, pads=[k // 2] * 4))
        x, c = f"conv{i}", out_c
        if bn_relu:
            for name, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
                inits.append(numpy_helper.from_array(np.full(c, value, np.float32), f"{name}{i}"))
            nodes.append(helper.make_node("BatchNormalization", [x, *(f"{n}{i}" for n in ("scale", "bias", "mean",
                                                                                        "var"))], [f"bn{i}"]))
            nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"]))
            x = f"relu{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                         ["batch", channels, size, size])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def random_graph(path, rng):
    layers = [("pw", int(rng.choice([8, 16, 24, 48]))) if rng.random() < 0.5 else ("dw", int(rng.choice([3, 5])))
              for _ in range(int(rng.integers(1, 6)))]
    return conv_graph(path, layers, channels=int(rng.choice([4, 8, 16])), size=int(rng.choice([8, 14, 28])))


TRUTH = {"intercept": 0.02, "conv1x1.count": 0.004, "conv1x1.mflop": 0.03, "dwconv.count": 0.006,
         "dwconv.mbyte": 0.2}
"""Known per-kernel costs (ms per call, per kernel, per MFLOP, per MB) the synthetic device charges."""


def synthetic_ms(features) -> float:
    return float(sum(TRUTH.get(name, 0.0) * v for name, v in zip(FEATURES, features.vector())))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder, rng = tmp_path_factory.mktemp("graphs"), np.random.default_rng(0)
    return [features_of(onnx.load(str(random_graph(folder / f"g{i}.onnx", rng)))) for i in range(30)]


def test_the_fit_recovers_known_per_kernel_costs_and_predicts_unseen_graphs(graphs):
    points = [CalibrationPoint(f"g{i}", f, synthetic_ms(f)) for i, f in enumerate(graphs[:20])]
    predictor = fit_predictor(points)
    for name in FEATURES:
        assert predictor.coefficients[name] == pytest.approx(TRUTH.get(name, 0.0), rel=1e-3, abs=1e-6), name
    for f in graphs[20:]:
        assert predictor.predict_features(f) == pytest.approx(synthetic_ms(f), rel=1e-3)


def test_noisy_measurements_still_meet_the_target_on_unseen_graphs(graphs):
    """+-3% timing noise: at least 90% of unseen graphs within +-10% (the issue's target), median error near 3%."""
    rng = np.random.default_rng(1)
    points = [CalibrationPoint(f"g{i}", f, synthetic_ms(f) * (1 + rng.uniform(-0.03, 0.03)))
              for i, f in enumerate(graphs[:20])]
    predictor = fit_predictor(points)
    errors = [abs(predictor.predict_features(f) / synthetic_ms(f) - 1) for f in graphs[20:]]
    assert np.mean(np.array(errors) <= 0.1) >= 0.9 and np.median(errors) < 0.03


def test_the_optimised_graph_counts_one_kernel_where_the_export_has_three(tmp_path):
    path = conv_graph(tmp_path / "m.onnx", [("pw", 16), ("dw", 3)], channels=8, size=14, bn_relu=True)
    exported = kernel_features(path, graph="exported").by_kind
    optimized = kernel_features(path).by_kind
    assert exported["conv1x1"][0] == exported["dwconv"][0] == 1 and exported["elementwise"][0] == 4  # 2 BN, 2 ReLU
    assert optimized["conv1x1"][0] == optimized["dwconv"][0] == 1 and optimized["elementwise"][0] == 0
    assert optimized["dwconv"][1] == pytest.approx(2 * 16 * 14 * 14 * 9 / 1e6, rel=0.2)  # MFLOPs (NCHWc may pad)


def provenance(points: int) -> PredictorProvenance:
    return PredictorProvenance(hardware="cpu", device="AMD EPYC (x86_64)", runtime="onnxruntime",
                               runtime_version="onnxruntime 1.32.0", precision="fp32", threads=2, batch=1,
                               points=points, fitted_at="2026-12-07T03:00:00+00:00", space="xray-tiny", image_size=28)


@pytest.fixture(scope="module")
def fitted(graphs):
    points = [CalibrationPoint(f"g{i}", f, synthetic_ms(f)) for i, f in enumerate(graphs[:12])]
    return fit_predictor(points, provenance=provenance(len(points)))


def test_an_estimate_is_labelled_estimated_and_names_its_predictor(fitted, tmp_path):
    path = conv_graph(tmp_path / "m.onnx", [("pw", 16), ("dw", 5)], channels=8, size=14)
    m = fitted.estimate(path)
    assert (m.method, m.backend, m.precision, m.batch, m.threads) == ("estimated", "estimate", "fp32", 1, 2)
    assert m.device == "AMD EPYC (x86_64) (estimated)"
    assert "latency predictor" in m.runtime_version and "12 measured points" in m.runtime_version
    assert "onnxruntime 1.32.0" in m.runtime_version and "2026-12-07" in m.runtime_version
    assert m.p50_ms == pytest.approx(fitted.predict_ms(path)) and m.runs == 0


def test_save_and_load_round_trip(fitted, tmp_path, graphs):
    path = fitted.save(predictor_path(tmp_path, "cpu", "onnxruntime", "fp32"))
    assert path == tmp_path / "calibration" / "cpu-onnxruntime-fp32.json"
    loaded = LatencyPredictor.load(path)
    assert loaded == fitted and loaded.provenance.points == 12
    assert loaded.predict_features(graphs[25]) == fitted.predict_features(graphs[25])


def test_a_missing_or_unfittable_predictor_says_what_to_do(tmp_path, graphs):
    with pytest.raises(ConfigError, match="nas calibrate --measure"):
        LatencyPredictor.load(tmp_path / "none.json")
    with pytest.raises(ConfigError, match="at least 2 measured points"):
        fit_predictor([CalibrationPoint("g0", graphs[0], 1.0)])
