"""The ONNX parity check fails loudly when the exported file does not compute what the model computes."""

import pytest
import torch

from nas.errors import TrialError
from nas.export import check_parity, to_onnx
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

SPEC = Spec(family="dsconv", input_size=28, in_channels=1, num_classes=2,
            training=TrainingSpec(lr=1e-3, weight_decay=0, epochs=1, augment=0),
            arch={"stem_width": 8, "stem_stride": 2, "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}],
                  "se": True, "activation": "hardswish", "dropout": 0.1})


def test_parity_holds_for_the_same_model(tmp_path):
    model = create_model(SPEC)
    path = to_onnx(model, SPEC.input_shape, tmp_path / "m.onnx")
    assert check_parity(model, path, torch.rand(4, *SPEC.input_shape)) < 1e-4


def test_parity_fails_for_another_model(tmp_path):
    torch.manual_seed(0)
    exported = create_model(SPEC)
    path = to_onnx(exported, SPEC.input_shape, tmp_path / "m.onnx")
    torch.manual_seed(1)
    other = create_model(SPEC)
    with pytest.raises(TrialError, match="ONNX class probabilities differ from PyTorch"):
        check_parity(other, path, torch.rand(4, *SPEC.input_shape))


def test_export_keeps_a_dynamic_batch_axis(tmp_path):
    import onnxruntime as ort
    import numpy as np

    path = to_onnx(create_model(SPEC), SPEC.input_shape, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        assert session.run(None, {"input": np.zeros((batch, 1, 28, 28), np.float32)})[0].shape == (batch, 2)
