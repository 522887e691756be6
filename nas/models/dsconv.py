"""Depthwise-separable CNN: the lightweight family that small-input medical classifiers are built from.

A standard conv stem, then stages of (depthwise kxk -> BN -> act -> [SE] -> pointwise 1x1 -> BN -> act) blocks,
global average pooling, dropout and a linear head. Every width, depth, stride and kernel is a search dimension.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas.models._family import Bounds, Family, ParamFn, register_family
from nas.spec import Spec

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "hardswish": nn.Hardswish}
BOUNDS = {
    "stem_width": Bounds(int, 1, 4096), "stem_stride": Bounds(int, 1, 4), "num_stages": Bounds(int, 1, 16),
    "stage_width": Bounds(int, 1, 4096), "stage_depth": Bounds(int, 1, 16), "stage_stride": Bounds(int, 1, 4),
    "kernel_size": Bounds(int, 1, 15), "se": Bounds(bool), "activation": Bounds(str, choices=tuple(ACTIVATIONS)),
    "dropout": Bounds(float, 0, 1, high_open=True),
}
"""The 2D and 3D dsconv families' parameters (the 3D one has no `se`)."""
# One network for images (2 spatial dimensions) and volumes (3), as MONAI's networks take `spatial_dims`.
CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
POOL: dict[int, type[nn.Module]] = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4, dims: int = 2) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = CONV[dims](channels, hidden, 1)
        self.fc2 = CONV[dims](hidden, channels, 1)
        self.spatial = tuple(range(2, 2 + dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(self.spatial, keepdim=True)
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(scale))))
        return x * scale


class DSBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, kernel: int, se: bool, act: type[nn.Module],
                 dims: int = 2) -> None:
        super().__init__()
        self.dw = CONV[dims](cin, cin, kernel, stride, kernel // 2, groups=cin, bias=False)
        self.bn1 = NORM[dims](cin)
        self.act1 = act()
        self.se = SqueezeExcite(cin, dims=dims) if se else nn.Identity()
        self.pw = CONV[dims](cin, cout, 1, bias=False)
        self.bn2 = NORM[dims](cout)
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.act1(self.bn1(self.dw(x))))
        return self.act2(self.bn2(self.pw(x)))


class DSConvNet(nn.Module):
    """`dims` 2 for images (the dsconv family), 3 for CT patches (dsconv3d, which has no squeeze-excite)."""

    def __init__(self, in_channels: int, num_classes: int, arch: dict[str, Any], dims: int = 2) -> None:
        super().__init__()
        act = ACTIVATIONS[arch["activation"]]
        stem = arch["stem_width"]
        self.stem = nn.Sequential(
            CONV[dims](in_channels, stem, 3, arch["stem_stride"], 1, bias=False), NORM[dims](stem), act()
        )
        blocks: list[nn.Module] = []
        cin = stem
        for stage in arch["stages"]:
            for i in range(stage["depth"]):
                stride = stage["stride"] if i == 0 else 1
                blocks.append(DSBlock(cin, stage["width"], stride, stage["kernel"], arch.get("se", False), act, dims))
                cin = stage["width"]
        self.blocks = nn.Sequential(*blocks)
        self.pool = POOL[dims](1)
        self.dropout = nn.Dropout(arch["dropout"])
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x))).flatten(1)
        return self.head(self.dropout(x))


def _sample(p: ParamFn) -> dict[str, Any]:
    stages = [
        {
            "width": int(p("stage_width", i)),
            "depth": int(p("stage_depth", i)),
            "stride": int(p("stage_stride", i)),
            "kernel": int(p("kernel_size", i)),
        }
        for i in range(int(p("num_stages")))
    ]
    return {
        "stem_width": int(p("stem_width")),
        "stem_stride": int(p("stem_stride")),
        "stages": stages,
        "se": bool(p("se")),
        "activation": str(p("activation")),
        "dropout": float(p("dropout")),
    }


def _build(spec: Spec) -> nn.Module:
    return DSConvNet(spec.in_channels, spec.num_classes, spec.arch)


register_family(
    Family(
        name="dsconv",
        description="depthwise-separable CNN (stem, stages of dw kxk + pw 1x1, optional SE)",
        params=(
            "stem_width", "stem_stride", "num_stages", "stage_width", "stage_depth", "stage_stride",
            "kernel_size", "se", "activation", "dropout",
        ),
        sample=_sample,
        build=_build,
        bounds=BOUNDS,
    )
)
