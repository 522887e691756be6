"""INT8 quantization produces a real QDQ graph that ONNX Runtime runs and that tracks the float model."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nas.compress import quantize_int8
from nas.data import load_dataset
from nas.errors import TrialError
from nas.export import to_onnx
from nas.models import create_model
from nas.spec import Spec, TrainingSpec
from nas.tasks.xray import preprocess

SPEC = Spec(family="dsconv", input_size=28, in_channels=1, num_classes=2,
            training=TrainingSpec(lr=1e-3, weight_decay=0, epochs=1, augment=0),
            arch={"stem_width": 16, "stem_stride": 1, "stages": [{"width": 32, "depth": 1, "stride": 2, "kernel": 3}],
                  "se": False, "activation": "relu", "dropout": 0.0})


def test_int8_graph_runs_and_stays_close_to_float(tmp_path):
    torch.manual_seed(0)
    model = create_model(SPEC).eval()
    images = preprocess(load_dataset(None).split("train").images[:128], 28).numpy()
    float_path = to_onnx(model, SPEC.input_shape, tmp_path / "f.onnx")
    int8_path = quantize_int8(float_path, tmp_path / "q.onnx", images)
    ops = {n.op_type for n in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": images[:32]})[0]  # noqa: E731
    exact, approx = run(float_path), run(int8_path)
    assert approx.shape == exact.shape
    assert np.abs(approx - exact).max() < 0.1 * np.abs(exact).max() + 1e-3


def test_the_classifier_head_stays_float_so_scores_keep_their_ranking(tmp_path):
    """Quantized logits collapse many cases onto one score (ties that cost AUC); the head that writes them stays
    float, so scores of distinct images stay distinct, and only the head does."""
    torch.manual_seed(0)
    model = create_model(SPEC).eval()
    images = preprocess(load_dataset(None).split("train").images[:128], 28).numpy()
    int8_path = quantize_int8(to_onnx(model, SPEC.input_shape, tmp_path / "f.onnx"), tmp_path / "q.onnx", images)
    graph = onnx.load(str(int8_path)).graph
    writer = next(n for n in graph.node if "logits" in n.output)
    assert writer.op_type == "Gemm"  # float Gemm on dequantized features, not a QuantizeLinear of the logits
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) >= 2  # the convolutions are still INT8
    logits = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"]).run(None, {"input": images})[0]
    assert len(np.unique(logits[:, 1] - logits[:, 0])) == len(images)


def test_unquantizable_input_is_a_trial_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(TrialError, match="INT8 quantization"):
        quantize_int8(bad, tmp_path / "q.onnx", np.zeros((4, 1, 28, 28), np.float32))


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_every_calibration_method_quantizes_without_writing_to_stdout(method, tmp_path, capfd):
    """--json output owns stdout; ONNX Runtime's histogram calibrators print progress there."""
    torch.manual_seed(0)
    images = preprocess(load_dataset(None).split("train").images[:64], 28).numpy()
    float_path = to_onnx(create_model(SPEC).eval(), SPEC.input_shape, tmp_path / "f.onnx")
    capfd.readouterr()
    quantize_int8(float_path, tmp_path / "q.onnx", images, method=method)
    assert capfd.readouterr().out == ""
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
