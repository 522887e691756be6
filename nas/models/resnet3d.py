"""A small 3D ResNet for CT patches: basic residual blocks (two 3x3x3 convolutions) in a few stages.

The full-convolution counterpart of dsconv3d: more arithmetic per voxel, but dense kernels that CPUs run well, so
which of the two is faster at a given accuracy is a question for the measurement, not for MAC counts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nas.models._family import Family, ParamFn, register_family
from nas.models.dsconv import BOUNDS
from nas.models.volume import PATCH_PARAMS


class BasicBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.act = nn.ReLU()
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet3d(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, arch: dict[str, Any]) -> None:
        super().__init__()
        stem = arch["stem_width"]
        self.stem = nn.Sequential(nn.Conv3d(in_channels, stem, 3, arch["stem_stride"], 1, bias=False),
                                  nn.BatchNorm3d(stem), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = stem
        for stage in arch["stages"]:
            for i in range(stage["depth"]):
                blocks.append(BasicBlock3d(cin, stage["width"], stage["stride"] if i == 0 else 1))
                cin = stage["width"]
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(arch["dropout"])
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(self.blocks(self.stem(x))).flatten(1)))


def _sample(p: ParamFn) -> dict[str, Any]:
    # kernel is fixed (3x3x3) and recorded so a spec's summary reads like the other families'
    stages = [{"width": int(p("stage_width", i)), "depth": int(p("stage_depth", i)), "stride": int(p("stage_stride", i)),
               "kernel": 3} for i in range(int(p("num_stages")))]
    return {"stem_width": int(p("stem_width")), "stem_stride": int(p("stem_stride")), "stages": stages,
            "dropout": float(p("dropout"))}


register_family(
    Family(
        name="resnet3d",
        description="small 3D ResNet for CT patches (stem, stages of basic 3x3x3 residual blocks)",
        params=("stem_width", "stem_stride", "num_stages", "stage_width", "stage_depth", "stage_stride", "dropout",
                *PATCH_PARAMS),
        sample=_sample,
        build=lambda spec: ResNet3d(spec.in_channels, spec.num_classes, spec.arch),
        bounds={k: v for k, v in BOUNDS.items() if k not in ("se", "activation", "kernel_size")},
        spatial_dims=3,
    )
)
