"""3D depthwise-separable CNN: the light family for classifying CT patches (the nodule pipeline's second stage).

The 2D dsconv family lifted to volumes: a conv stem, stages of (depthwise kxkxk -> BN -> act -> pointwise 1x1x1 ->
BN -> act) blocks, global average pooling, dropout and a linear head. A depthwise 3D kernel costs k^3 per channel
rather than k^3 x C_in, which is what makes a 3D classifier cheap enough to run on a CPU per candidate.

A 3D family's block in a search space also declares the hand-off from the first stage (`PATCH_PARAMS`): the patch
edge it classifies and how many stage-1 candidates, above what stage-1 score, it is given, since those set how
often and on what this model runs. `sample` returns the architecture only; the nodule task draws the rest.
"""

from __future__ import annotations

from typing import Any

from nas.models._family import Family, ParamFn, register_family
from nas.models.dsconv import BOUNDS, DSConvNet
from nas.models.volume import PATCH_PARAMS

def _sample(p: ParamFn) -> dict[str, Any]:
    stages = [
        {"width": int(p("stage_width", i)), "depth": int(p("stage_depth", i)), "stride": int(p("stage_stride", i)),
         "kernel": int(p("kernel_size", i))}
        for i in range(int(p("num_stages")))
    ]
    return {"stem_width": int(p("stem_width")), "stem_stride": int(p("stem_stride")), "stages": stages,
            "activation": str(p("activation")), "dropout": float(p("dropout"))}


register_family(
    Family(
        name="dsconv3d",
        description="3D depthwise-separable CNN for CT patches (stem, stages of dw kxkxk + pw 1x1x1)",
        params=("stem_width", "stem_stride", "num_stages", "stage_width", "stage_depth", "stage_stride",
                "kernel_size", "activation", "dropout", *PATCH_PARAMS),
        sample=_sample,
        build=lambda spec: DSConvNet(spec.in_channels, spec.num_classes, spec.arch, dims=3),
        bounds={k: v for k, v in BOUNDS.items() if k != "se"},
        spatial_dims=3,
    )
)

