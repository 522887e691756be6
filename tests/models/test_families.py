"""Contract tests over the family registry: every family builds its smallest and largest configuration, runs a
forward pass, exports to ONNX, and the ONNX output matches PyTorch."""

from __future__ import annotations

import optuna
import pytest
import timm
import torch

from nas.data import load_dataset
from nas.export import check_parity, to_onnx
from nas.models import create_model, get_family, list_families
from nas.models.complexity import count_macs, count_params
from nas.spaces import Distribution, load_space, sample_spec
from nas.spec import Spec, TrainingSpec
from nas.tasks.xray import preprocess

SPACE = load_space("xray")
VAL_IMAGES = load_dataset(None).split("val").images[:8]


def real_inputs(spec: Spec) -> torch.Tensor:
    """Parity is checked on real pre-processed X-rays, as the search and export do."""
    return preprocess(VAL_IMAGES, spec.input_size)
RECIPE = TrainingSpec(lr=1e-3, weight_decay=0, epochs=1, augment=0)


def _extreme(param, largest: bool):
    if not isinstance(param, Distribution):
        return param
    if param.choices is not None:
        ordered = sorted(param.choices, key=lambda v: (isinstance(v, str), v))
        return ordered[-1] if largest else ordered[0]
    return param.high if largest else param.low


def extreme_spec(family: str, largest: bool) -> Spec:
    """The space's smallest or largest candidate of `family`, drawn through the normal sampling path."""
    params = {"family": family, "input_size": _extreme(SPACE.input_size, largest)}
    for name, param in SPACE.families[family].items():
        value = _extreme(param, largest)
        params[f"{family}.{name}"] = value
        for i in range(8):  # per-stage copies; unused ones are ignored
            params[f"{family}.{name}[{i}]"] = value
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(params)
    return sample_spec(SPACE, study.ask(), in_channels=1, num_classes=2)


CASES = [(f, largest) for f in SPACE.families for largest in (False, True)]


@pytest.mark.parametrize("family,largest", CASES, ids=[f"{f}-{'largest' if l else 'smallest'}" for f, l in CASES])
def test_family_builds_runs_and_exports(family, largest, tmp_path):
    spec = extreme_spec(family, largest)
    model = create_model(spec).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *spec.input_shape))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    path = to_onnx(model, spec.input_shape, tmp_path / "m.onnx")
    assert check_parity(model, path, real_inputs(spec)) < 1e-3


def test_largest_is_larger_than_smallest():
    for family in SPACE.families:
        small, large = (extreme_spec(family, flag) for flag in (False, True))
        assert count_params(create_model(large)) > count_params(create_model(small)), family
        assert count_macs(create_model(large), large.input_shape) > count_macs(create_model(small), small.input_shape)


@pytest.mark.parametrize("variant", ["resnet18", "resnet50"])
def test_resnet_baselines_export(variant, tmp_path):
    spec = Spec(family="resnet", arch={"variant": variant}, input_size=28, in_channels=1, num_classes=2, training=RECIPE)
    model = create_model(spec)
    assert check_parity(model, to_onnx(model, spec.input_shape, tmp_path / "r.onnx"), real_inputs(spec)) < 1e-3


@pytest.mark.parametrize("family,arch,timm_name", [
    ("mobilenetv3", {"size": "small", "width": 1.0, "depth": 1.0}, "mobilenetv3_small_100"),
    ("mobilenetv3", {"size": "large", "width": 1.0, "depth": 1.0}, "mobilenetv3_large_100"),
    ("efficientnet", {"width": 1.0, "depth": 1.0}, "efficientnet_b0"),
])
def test_unit_multipliers_give_the_named_timm_model(family, arch, timm_name):
    """Guards the private timm generators we call: at 1.0 they must equal timm's registered model."""
    spec = Spec(family=family, arch=arch, input_size=28, in_channels=1, num_classes=2, training=RECIPE)
    ours = create_model(spec)
    theirs = timm.create_model(timm_name, pretrained=False, num_classes=2, in_chans=1)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


def test_width_multiplier_scales_timm_families():
    base = dict(input_size=28, in_channels=1, num_classes=2, training=RECIPE)
    narrow = create_model(Spec(family="mobilenetv3", arch={"size": "small", "width": 0.5, "depth": 1.0}, **base))
    wide = create_model(Spec(family="mobilenetv3", arch={"size": "small", "width": 1.0, "depth": 1.0}, **base))
    assert count_params(narrow) < 0.6 * count_params(wide)


def test_every_registered_family_is_covered():
    """2D families here; the 3D (volume) ones in test_3d_families.py."""
    assert set(list_families()) == set(SPACE.families) | {"resnet"} | {f for f in list_families() if get_family(f).spatial_dims == 3}
