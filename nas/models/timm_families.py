"""MobileNetV3, EfficientNet and ResNet from timm, with width and depth as search dimensions.

timm's public `create_model` fixes width and depth in the variant name (mobilenetv3_small_100, efficientnet_b0),
so the scaled families go through timm's own generators, which take the multipliers as arguments. Those are
private to timm: they are called here and nowhere else, and the contract tests check that multipliers of 1.0
give exactly the named timm model, so a change in timm fails a test rather than a search.

timm is imported when a model is built, not when the families register: importing it pulls in torchvision and
torch._dynamo, seconds of start-up that a search of dsconv nets, or a command that only lists, never needs.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from nas.models._family import Bounds, Family, ParamFn, register_family
from nas.spec import Spec

# The timm variant each generator is asked for: it selects the block layout; the multipliers scale it.
_MOBILENETV3_VARIANTS = {"small": "mobilenetv3_small_100", "large": "mobilenetv3_large_100"}
_EFFICIENTNET_VARIANT = "efficientnet_b0"


def _build_mobilenetv3(spec: Spec) -> nn.Module:
    from timm.models import mobilenetv3 as _timm_mobilenetv3

    a = spec.arch
    return _timm_mobilenetv3._gen_mobilenet_v3(
        _MOBILENETV3_VARIANTS[a["size"]],
        channel_multiplier=a["width"],
        depth_multiplier=a["depth"],
        pretrained=False,
        num_classes=spec.num_classes,
        in_chans=spec.in_channels,
    )


def _build_efficientnet(spec: Spec) -> nn.Module:
    from timm.models import efficientnet as _timm_efficientnet

    a = spec.arch
    return _timm_efficientnet._gen_efficientnet(
        _EFFICIENTNET_VARIANT,
        channel_multiplier=a["width"],
        depth_multiplier=a["depth"],
        pretrained=False,
        num_classes=spec.num_classes,
        in_chans=spec.in_channels,
    )


def _build_resnet(spec: Spec) -> nn.Module:
    import timm

    return timm.create_model(
        spec.arch["variant"], pretrained=False, num_classes=spec.num_classes, in_chans=spec.in_channels
    )


SCALED_BOUNDS = {"width": Bounds(float, 0, 4, low_open=True), "depth": Bounds(float, 0, 4, low_open=True)}
"""Channel and depth multipliers: 0 would build a model without channels or blocks."""


def _sample_scaled(p: ParamFn) -> dict[str, Any]:
    return {"width": float(p("width")), "depth": float(p("depth"))}


register_family(
    Family(
        name="mobilenetv3",
        description="timm MobileNetV3 (small/large) with channel and depth multipliers",
        params=("size", "width", "depth"),
        sample=lambda p: {"size": str(p("size")), **_sample_scaled(p)},
        build=_build_mobilenetv3,
        bounds={"size": Bounds(str, choices=tuple(_MOBILENETV3_VARIANTS)), **SCALED_BOUNDS},
    )
)
register_family(
    Family(
        name="efficientnet",
        description="timm EfficientNet (B0 layout) with channel and depth multipliers",
        params=("width", "depth"),
        sample=_sample_scaled,
        build=_build_efficientnet,
        bounds=SCALED_BOUNDS,
    )
)
register_family(
    Family(
        name="resnet",
        description="timm ResNet (resnet18 / resnet50), the usual baselines",
        params=("variant",),
        sample=lambda p: {"variant": str(p("variant"))},
        build=_build_resnet,
        bounds={"variant": Bounds(str)},
    )
)
