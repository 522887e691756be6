"""Contract tests over the 3D (patch) families: the nodule space's smallest and largest candidate of each builds,
runs, exports to ONNX with parity, prunes to planned channel counts, and quantizes to INT8."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from nas.compress import build_model, plan_channels, prune_to_channels, quantize_int8
from nas.export import check_parity, onnx_predict, onnx_session, to_onnx
from nas.models import create_model, get_family, list_families
from nas.models.complexity import count_params
from nas.spaces import load_space
from nas.tasks.nodule.space import NoduleSpec, sample_nodule_spec, stages
from test_families import _extreme

SPACE = load_space("nodule")
SMALL_PATCH = 16  # contract tests run at the smallest patch: every architecture must accept it


def extreme(family: str, largest: bool) -> NoduleSpec:
    """The space's smallest or largest second stage of `family`, drawn through the nodule sampler."""
    screen = stages(SPACE)[0][0]
    params = {"screen.family": screen, "classify.family": family}
    for prefix, name in (("screen", screen), ("classify", family)):
        for key, param in SPACE.families[name].items():
            for suffix in [""] + [f"[{i}]" for i in range(4)]:
                params[f"{prefix}.{name}.{key}{suffix}"] = _extreme(param, largest)
    params[f"classify.{family}.patch_size"] = SMALL_PATCH
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(params)
    return sample_nodule_spec(SPACE, study.ask(), max_epochs=1)


VOLUME_FAMILIES = [f for f in list_families() if get_family(f).spatial_dims == 3]
CASES = [(f, largest) for f in VOLUME_FAMILIES for largest in (False, True)]


def test_the_nodule_space_offers_every_3d_family():
    assert set(stages(SPACE)[1]) == set(VOLUME_FAMILIES) == {"dsconv3d", "resnet3d"}


@pytest.mark.parametrize("family,largest", CASES, ids=[f"{f}-{'largest' if l else 'smallest'}" for f, l in CASES])
def test_3d_family_builds_runs_and_exports(family, largest, tmp_path):
    spec = extreme(family, largest).classify
    assert spec.spatial_dims == 3 and spec.input_shape == (1, SMALL_PATCH, SMALL_PATCH, SMALL_PATCH)
    model = create_model(spec).eval()
    inputs = torch.randn(4, *spec.input_shape)
    with torch.no_grad():
        out = model(inputs)
    assert out.shape == (4, 2) and torch.isfinite(out).all()
    assert check_parity(model, to_onnx(model, spec.input_shape, tmp_path / "m.onnx"), inputs) < 1e-3


def test_largest_is_larger_than_smallest():
    for family in VOLUME_FAMILIES:
        small, large = (create_model(extreme(family, flag).classify) for flag in (False, True))
        assert count_params(large) > count_params(small), family


@pytest.mark.parametrize("family", ["dsconv3d", "resnet3d"])
def test_3d_pruning_and_int8(family, tmp_path):
    """Pruned shapes come from the spec (settled point 1) in 3D as in 2D, and INT8 runs on 3D convolutions."""
    spec = extreme(family, False).classify
    model = create_model(spec)
    channels = plan_channels(model, spec, 0.5)
    assert channels
    spec = spec.model_copy(update={"compression": spec.compression.model_copy(update={"channels": channels})})
    prune_to_channels(model, spec, channels)
    rebuilt = build_model(spec)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    fp32 = to_onnx(model, spec.input_shape, tmp_path / "fp32.onnx")
    calibration = np.random.default_rng(0).standard_normal((8, *spec.input_shape)).astype(np.float32)
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", calibration)
    assert onnx_predict(onnx_session(int8), calibration).shape == (8, 2)
