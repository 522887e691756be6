"""The measurement cache: keyed by graph shapes (not weights), profile, precision and machine."""

import json

import pytest
import torch

from conftest import QUICK_PROFILE
from nas.export import to_onnx
from nas.hardware import load_profile, open_target
from nas.hardware.cache import MeasurementCache, graph_digest
from nas.models import create_model
from nas.spaces import load_space
from nas.spec import Spec, TrainingSpec


def _model(width: int, seed: int) -> tuple[torch.nn.Module, Spec]:
    arch = {**load_space("xray-tiny").baselines[0].arch}
    arch["stages"] = [{**s, "width": width} for s in arch["stages"]]
    spec = Spec(family="dsconv", arch=arch, input_size=28, in_channels=1, num_classes=2,
                training=TrainingSpec(lr=0.003, weight_decay=0, epochs=1, augment=0))
    torch.manual_seed(seed)
    return create_model(spec).eval(), spec


def test_graph_digest_ignores_weights_but_not_shapes(tmp_path):
    a, spec = _model(32, seed=0)
    b, _ = _model(32, seed=1)
    c, _ = _model(48, seed=0)
    paths = [to_onnx(m, spec.input_shape, tmp_path / f"{i}.onnx") for i, m in enumerate((a, b, c))]
    assert paths[0].read_bytes() != paths[1].read_bytes()  # different weights ...
    assert graph_digest(paths[0]) == graph_digest(paths[1])  # ... same shapes
    assert graph_digest(paths[0]) != graph_digest(paths[2])


@pytest.mark.slow
def test_openvino_int8_ir_digest_ignores_weights_and_scales(tmp_path):
    """OpenVINO's INT8 IR (NNCF) is cached like an ONNX file: by its graph, not its weights or calibration."""
    import numpy as np

    from nas.compress.quantize import quantize_int8_openvino

    rng = np.random.default_rng(0)
    a, spec = _model(32, seed=0)
    b, _ = _model(32, seed=1)
    c, _ = _model(48, seed=0)
    irs = [quantize_int8_openvino(to_onnx(m, spec.input_shape, tmp_path / f"{i}.onnx"), tmp_path / f"{i}.xml",
                                  rng.standard_normal((4, *spec.input_shape)).astype(np.float32) * (i + 1))
           for i, m in enumerate((a, b, c))]
    assert irs[0].with_suffix(".bin").read_bytes() != irs[1].with_suffix(".bin").read_bytes()
    assert graph_digest(irs[0]) == graph_digest(irs[1])
    assert graph_digest(irs[0]) != graph_digest(irs[2])


def test_same_shapes_are_timed_once_and_the_reuse_is_recorded(tmp_path):
    target = open_target(load_profile(str(QUICK_PROFILE)))
    cache = MeasurementCache(tmp_path / "cache")
    a, spec = _model(32, seed=0)
    b, _ = _model(32, seed=1)
    first = cache.measure(target, to_onnx(a, spec.input_shape, tmp_path / "a.onnx"), "fp32", spec.input_shape,
                          origin="study x trial 1")
    again = cache.measure(target, to_onnx(b, spec.input_shape, tmp_path / "b.onnx"), "fp32", spec.input_shape)
    assert (cache.measured, cache.reused) == (1, 1)
    assert first.reused_from is None and again.reused_from.startswith("study x trial 1 (")
    assert again.p50_ms == first.p50_ms
    # Another process (a second study) on this machine finds it on disk; a damaged record is measured again.
    later = MeasurementCache(tmp_path / "cache")
    assert later.measure(target, tmp_path / "b.onnx", "fp32", spec.input_shape).reused_from is not None
    record = next((tmp_path / "cache").glob("*.json"))
    record.write_text("{not json")
    assert later.measure(target, tmp_path / "b.onnx", "fp32", spec.input_shape).reused_from is None
    assert json.loads(record.read_text())["origin"].endswith("b.onnx")


@pytest.mark.parametrize("change", ["precision", "profile"])
def test_a_different_precision_or_profile_is_a_different_record(tmp_path, change):
    profile = load_profile(str(QUICK_PROFILE))
    cache = MeasurementCache(tmp_path / "cache")
    model, spec = _model(32, seed=0)
    onnx_path = to_onnx(model, spec.input_shape, tmp_path / "m.onnx")
    key = cache.key(open_target(profile), onnx_path, "fp32", spec.input_shape)
    if change == "precision":
        other = cache.key(open_target(profile), onnx_path, "int8", spec.input_shape)
    else:
        changed = profile.model_copy(update={"batch": 4})
        other = cache.key(open_target(changed), onnx_path, "fp32", spec.input_shape)
    assert key != other
