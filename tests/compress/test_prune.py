"""Structured pruning removes channels for real, keeps ONNX parity, and rebuilds from the spec alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.compress import build_model, load_model, plan_channels, prune_to_channels
from nas.export import check_parity, to_onnx
from nas.models import create_model
from nas.models.complexity import count_macs, count_params
from nas.spec import CompressionSpec, Spec, TrainingSpec

RECIPE = TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0)
ARCHS = {
    "dsconv": {"stem_width": 32, "stem_stride": 1, "se": True, "activation": "relu", "dropout": 0.0,
               "stages": [{"width": 64, "depth": 1, "stride": 2, "kernel": 3},
                          {"width": 128, "depth": 2, "stride": 2, "kernel": 3}]},
    "mobilenetv3": {"size": "small", "width": 0.5, "depth": 0.5},
    "efficientnet": {"width": 0.25, "depth": 0.25},
    "resnet": {"variant": "resnet18"},
}


def spec_for(family: str, **compression) -> Spec:
    return Spec(family=family, arch=ARCHS[family], input_size=28, in_channels=1, num_classes=2, training=RECIPE,
                compression=CompressionSpec(**compression))


def pruned_spec(spec: Spec, ratio: float, round_to: int = 1) -> Spec:
    channels = plan_channels(create_model(spec), spec, ratio, round_to)
    return spec.model_copy(update={"compression": CompressionSpec(prune_ratio=ratio, channels=channels)})


@pytest.mark.parametrize("family", list(ARCHS))
def test_pruning_half_the_channels_cuts_params_and_macs_in_proportion(family):
    spec = spec_for(family)
    full = create_model(spec)
    pruned = build_model(pruned_spec(spec, 0.5))
    # Halving both a layer's inputs and outputs leaves about a quarter of its weights and MACs; the stem's input,
    # the classifier's outputs and rounding keep a little more.
    for count in (count_params, lambda m: count_macs(m, spec.input_shape)):
        kept = count(pruned) / count(full)
        assert 0.15 < kept < 0.45, kept
    lighter = build_model(pruned_spec(spec, 0.25))
    assert count_params(pruned) < count_params(lighter) < count_params(full)


@pytest.mark.parametrize("family", ["dsconv", "mobilenetv3"])
def test_pruned_model_exports_and_matches_pytorch(family, tmp_path):
    spec = pruned_spec(spec_for(family), 0.5)
    torch.manual_seed(0)
    model = create_model(spec)
    prune_to_channels(model, spec, spec.compression.channels)
    onnx_path = to_onnx(model, spec.input_shape, tmp_path / "pruned.onnx")
    assert check_parity(model, onnx_path, torch.randn(8, *spec.input_shape)) < 1e-4


def test_a_pruned_member_rebuilds_from_its_spec_and_weights(tmp_path):
    spec = pruned_spec(spec_for("mobilenetv3"), 0.5)
    torch.manual_seed(1)
    model = create_model(spec)
    prune_to_channels(model, spec, spec.compression.channels)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    again = load_model(Spec.from_json(spec.to_json()), tmp_path / "model.pt")
    x = torch.randn(4, *spec.input_shape)
    assert torch.equal(model.eval()(x), again(x))


def test_counts_are_rounded_to_the_profiles_multiple_and_the_classifier_is_kept():
    spec = spec_for("resnet")
    channels = plan_channels(create_model(spec), spec, 0.3, round_to=8)
    assert channels and all(c % 8 == 0 for c in channels.values())
    assert "fc" not in channels
    assert build_model(pruned_spec(spec, 0.3, 8)).fc.out_features == 2


def test_trained_weights_choose_which_channels_go():
    """The lowest-L1 output channels are removed: here channels 1 and 3 carry almost nothing."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    spec = Spec(family="dsconv", arch=ARCHS["dsconv"], input_size=8, in_channels=1, num_classes=2, training=RECIPE)
    model(torch.zeros(1, 1, 8, 8))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([5.0, 0.01, 3.0, 0.02]).view(4, 1, 1, 1).expand(4, 1, 3, 3))
    kept = model[0].weight[[0, 2]].clone()
    prune_to_channels(model, spec, {"0": 2})
    assert model[0].out_channels == 2 and torch.equal(model[0].weight, kept)
    assert model[3].in_features == 2 * 6 * 6


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_a_ratio_outside_zero_to_one_is_refused_with_its_value(ratio):
    spec = spec_for("dsconv")
    with pytest.raises(ValueError, match=f"prune_ratio must be in \\[0, 1\\), got {ratio}"):
        plan_channels(create_model(spec), spec, ratio)
