"""A weight-sharing supernet over a search space's dsconv networks (Once-for-All, BigNAS).

It holds one DSConvNet block per (stage, depth) position at the space's largest sizes; a subnet, given as an
ordinary dsconv `Spec.arch`, runs on leading-channel slices of those weights, its first `depth` blocks per stage,
and the centre of each depthwise kernel (a 3x3 is the centre of the 5x5). `extract` builds the subnet with the
ordinary dsconv builder and copies the same slices in, so everything downstream (pruning, export, INT8,
measurement) sees a plain model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import ConfigError
from nas.models import create_model
from nas.models.dsconv import ACTIVATIONS, DSBlock
from nas.spaces import Distribution, SearchSpace
from nas.spec import Spec

FAMILY = "dsconv"
LARGER_IS_SMALLER = ("stem_stride", "stage_stride", "dropout")
"""Parameters whose largest value makes the smaller (cheaper, more regularised) network."""


def _values(param: Any) -> list[Any]:
    """Every value a declared parameter can take: a fixed value, its choices, or an integer range's ends and
    everything between (a float range's ends only: dropout, the one float, needs no more)."""
    if not isinstance(param, Distribution):
        return [param]
    if param.choices is not None:
        return list(param.choices)
    if param.is_int:
        return list(range(int(param.low), int(param.high) + 1))  # type: ignore[arg-type]
    return [param.low, param.high]


@dataclass(frozen=True)
class SupernetRange:
    """The dsconv part of a search space: what a subnet may take, and so the supernet's largest sizes."""

    params: dict[str, list[Any]]
    """Each dsconv parameter's possible values, as declared (choices, a range's values, or one fixed value)."""
    in_channels: int
    num_classes: int
    input_sizes: tuple[int, ...]

    @classmethod
    def from_space(cls, space: SearchSpace, *, in_channels: int, num_classes: int = 2) -> SupernetRange:
        if FAMILY not in space.families:
            raise ConfigError(f"{space.path}: --strategy one-shot needs the {FAMILY} family in the search space "
                              f"(it has {', '.join(space.families)}); the supernet is a {FAMILY} network")
        params = {name: _values(p) for name, p in space.families[FAMILY].items()}
        kernels = params["kernel_size"]
        if any(k % 2 == 0 for k in kernels):
            raise ConfigError(f"{space.path}: dsconv.kernel_size: {kernels} has an even size; a supernet shares "
                              "the centre of its largest kernel, so every size must be odd (3, 5, 7)")
        return cls(params=params, in_channels=in_channels, num_classes=num_classes,
                   input_sizes=tuple(int(s) for s in _values(space.input_size)))

    def most(self, name: str) -> Any:
        return max(self.params[name])

    def arch(self, pick: str, rng: random.Random | None = None) -> dict[str, Any]:
        """A subnet's `Spec.arch`, drawn by the dsconv family's own sampler: `largest`, `smallest` or `random`."""
        from nas.models import get_family

        def p(name: str, index: int | None = None) -> Any:
            values = self.params[name]
            if pick == "random":
                return (rng or random).choice(values)
            if all(isinstance(v, (int, float)) for v in values):  # bools included: se on is the larger
                big = max(values) if name not in LARGER_IS_SMALLER else min(values)
                small = min(values) if name not in LARGER_IS_SMALLER else max(values)
                return big if pick == "largest" else small
            return values[0]  # a name (activation): no order, the first declared

        return get_family(FAMILY).sample(p)

    def input_size(self, pick: str, rng: random.Random | None = None) -> int:
        if pick == "random":
            return (rng or random).choice(self.input_sizes)
        return max(self.input_sizes) if pick == "largest" else min(self.input_sizes)


def slice_to(weight: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The leading slice of `weight` with `shape`, except that a conv kernel's spatial axes take the centre."""
    index: list[slice] = []
    for axis, (have, want) in enumerate(zip(weight.shape, shape)):
        if want > have:
            raise ValueError(f"a subnet needs {tuple(shape)} but the supernet holds only {tuple(weight.shape)}")
        start = (have - want) // 2 if weight.dim() >= 3 and axis >= 2 else 0
        index.append(slice(start, start + want))
    return weight[tuple(index)]


class Supernet(nn.Module):
    """Every subnet of a `SupernetRange`, sharing weights. `forward(x, arch)` runs the subnet `arch` describes."""

    def __init__(self, span: SupernetRange) -> None:
        super().__init__()
        self.span = span
        stem, width = span.most("stem_width"), span.most("stage_width")
        kernel, depth, stages = span.most("kernel_size"), span.most("stage_depth"), span.most("num_stages")
        se = True in span.params["se"]
        self.stem = nn.Sequential(nn.Conv2d(span.in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem))
        self.stages = nn.ModuleList(
            nn.ModuleList(DSBlock(stem if i == 0 and j == 0 else width, width, 1, kernel, se, nn.ReLU)
                          for j in range(depth))
            for i in range(stages))
        self.head = nn.Linear(width, span.num_classes)

    def positions(self, arch: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]]:
        """(stage, depth index, stage) of every block the subnet runs, in order: what DSConvNet's `blocks` hold."""
        stages = arch["stages"]
        if len(stages) > len(self.stages):
            raise ValueError(f"a subnet has {len(stages)} stages; the supernet holds {len(self.stages)}")
        return [(i, j, stage) for i, stage in enumerate(stages) for j in range(stage["depth"])]

    def forward(self, x: torch.Tensor, arch: dict[str, Any]) -> torch.Tensor:
        act = ACTIVATIONS[arch["activation"]]()
        conv, bn = self.stem
        x = act(_bn(bn, F.conv2d(x, slice_to(conv.weight, (arch["stem_width"], x.shape[1], 3, 3)), None,
                                 arch["stem_stride"], 1)))
        for i, j, stage in self.positions(arch):
            x = self._block(self.stages[i][j], x, stage["width"], stage["kernel"], stage["stride"] if j == 0 else 1,
                            arch.get("se", False), act)
        x = x.mean((2, 3))
        x = F.dropout(x, arch["dropout"], self.training)
        return F.linear(x, slice_to(self.head.weight, (self.head.out_features, x.shape[1])), self.head.bias)

    @staticmethod
    def _block(block: DSBlock, x: torch.Tensor, cout: int, kernel: int, stride: int, se: bool,
               act: nn.Module) -> torch.Tensor:
        cin = x.shape[1]
        x = F.conv2d(x, slice_to(block.dw.weight, (cin, 1, kernel, kernel)), None, stride, kernel // 2, groups=cin)
        x = act(_bn(block.bn1, x))
        if se:
            hidden = max(8, cin // 4)  # as dsconv's SqueezeExcite sizes it for `cin` channels
            fc1, fc2 = block.se.fc1, block.se.fc2
            scale = x.mean((2, 3), keepdim=True)
            scale = F.conv2d(scale, slice_to(fc1.weight, (hidden, cin, 1, 1)), fc1.bias[:hidden]).relu()
            scale = torch.sigmoid(F.conv2d(scale, slice_to(fc2.weight, (cin, hidden, 1, 1)), fc2.bias[:cin]))
            x = x * scale
        x = F.conv2d(x, slice_to(block.pw.weight, (cout, cin, 1, 1)))
        return act(_bn(block.bn2, x))

    def source_name(self, arch: dict[str, Any], name: str) -> str:
        """The supernet tensor a standalone subnet's state-dict entry comes from (`blocks.k.` -> `stages.i.j.`)."""
        if not name.startswith("blocks."):
            return name
        _, k, rest = name.split(".", 2)
        i, j, _ = self.positions(arch)[int(k)]
        return f"stages.{i}.{j}.{rest}"

    def copy_into(self, model: nn.Module, arch: dict[str, Any]) -> nn.Module:
        """Load the subnet `arch`'s slices into `model`, a DSConvNet built from a spec with that arch."""
        source = self.state_dict()
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                held = source[self.source_name(arch, name)]
                tensor.copy_(held if tensor.dim() == 0 else slice_to(held, tensor.shape))
        return model

    def extract(self, spec: Spec) -> nn.Module:
        """A standalone model of the subnet `spec` describes: the ordinary dsconv builder, the supernet's slices."""
        if spec.family != FAMILY:
            raise ValueError(f"a {spec.family} candidate is not a subnet of the {FAMILY} supernet")
        return self.copy_into(create_model(spec), spec.arch).eval()


def _bn(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Batch norm on the leading channels; in training it updates those channels' running statistics in place."""
    c = x.shape[1]
    mean, var = bn.running_mean, bn.running_var
    return F.batch_norm(x, mean[:c] if mean is not None else None, var[:c] if var is not None else None,
                        bn.weight[:c], bn.bias[:c], bn.training, bn.momentum if bn.momentum is not None else 0.1,
                        bn.eps)
