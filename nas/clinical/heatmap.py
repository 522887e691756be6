"""Grad-CAM heatmaps: where in the image the model found evidence for the positive (abnormal) class.

Computed with pytorch_grad_cam on the export's float PyTorch twin (model.pt + spec.json), since gradients do not
flow through an ONNX Runtime session; for an INT8 deployment the overlay says so, because the twin's heatmap is
an explanation of the float model the INT8 file was quantized from, not of the INT8 arithmetic itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageDraw
from PIL.PngImagePlugin import PngInfo
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from nas.clinical.inputs import Image
from nas.compress import load_model
from nas.errors import ConfigError, unknown_name
from nas.spec import Spec

__all__ = ["BLOCKS", "Explainer", "overlay_paths", "target_layer"]

POSITIVE = 1
OVERLAY_SIDE = 512
"""Overlays are drawn with their longer side this many pixels, so a 28-pixel input and a 3000-pixel radiograph
both give a readable picture."""

MIN_MAP_SIDE = 4
"""Grad-CAM is read from the last block whose activation map is at least this many pixels a side: at 28x28 input
a timm MobileNetV3 ends at 1x1, where a heatmap would be one uniform value."""

BLOCKS: dict[str, Callable[[Any], list[nn.Module]]] = {
    "dsconv": lambda m: [m.stem, *m.blocks],
    "mobilenetv3": lambda m: [m.conv_stem, *m.blocks],  # timm; conv_head comes after global pooling
    "efficientnet": lambda m: [m.conv_stem, *m.blocks, m.conv_head],
    "resnet": lambda m: [m.layer1, m.layer2, m.layer3, m.layer4],
}
"""Per family, its convolutional blocks in forward order: the candidates for the Grad-CAM target layer."""


def target_layer(model: nn.Module, family: str, input_shape: Sequence[int]) -> nn.Module:
    """The last block of `family` whose output map is at least MIN_MAP_SIDE a side for this input shape."""
    if family not in BLOCKS:
        raise ConfigError(unknown_name("model family for Grad-CAM", family, BLOCKS))
    blocks = BLOCKS[family](model)
    sides: dict[int, int] = {}
    hooks = [b.register_forward_hook(lambda _m, _i, out, i=i: sides.__setitem__(i, min(out.shape[-2:])))
             for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    wide = [i for i in range(len(blocks)) if sides.get(i, 0) >= MIN_MAP_SIDE]
    return blocks[wide[-1] if wide else 0]


@dataclass
class Explainer:
    """Grad-CAM of one exported model's float twin, for the positive class."""

    cam: GradCAM
    family: str
    note: str | None
    """Said on every overlay when the deployed file is not the float model (INT8)."""

    @classmethod
    def from_export(cls, folder: Path, io: dict[str, Any]) -> Explainer:
        spec = Spec.load(Path(folder) / "spec.json")
        model = load_model(spec, Path(folder) / "model.pt")
        note = None
        if io.get("precision", "fp32") != "fp32":
            note = (f"Grad-CAM from the float twin (model.pt) of the deployed {io['precision'].upper()} "
                    f"{io['file']}")
        layer = target_layer(model, spec.family, spec.input_shape)
        return cls(GradCAM(model, target_layers=[layer]), spec.family, note)

    def heatmaps(self, inputs: np.ndarray) -> np.ndarray:
        """(N, H, W) maps in [0, 1] at the input size, for pre-processed (N, C, H, W) inputs."""
        tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
        return self.cam(input_tensor=tensor, targets=[ClassifierOutputTarget(POSITIVE)] * len(tensor))

    def save(self, image: Image, inputs: np.ndarray, score: float, path: Path) -> Path:
        """Overlay the heatmap of `inputs` (one pre-processed image) on the displayed `image`, with a caption."""
        heatmap = self.heatmaps(inputs)[0]
        grey = image.pixels if image.pixels.shape[-1] == 3 else np.repeat(image.pixels, 3, axis=-1)
        height, width = grey.shape[:2]
        scale = OVERLAY_SIDE / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        shown = np.asarray(PILImage.fromarray(grey.clip(0, 255).astype(np.uint8)).resize(size, PILImage.BILINEAR))
        mask = np.asarray(PILImage.fromarray(heatmap.astype(np.float32), mode="F").resize(size, PILImage.BILINEAR))
        overlay = PILImage.fromarray(show_cam_on_image(shown / 255.0, mask.clip(0, 1), use_rgb=True))
        lines = [f"score {score:.3f}; Grad-CAM ({self.family}), positive class"] + ([self.note] if self.note else [])
        canvas = PILImage.new("RGB", (size[0], size[1] + 14 * len(lines) + 4), "black")
        canvas.paste(overlay, (0, 0))
        draw = ImageDraw.Draw(canvas)
        for i, line in enumerate(lines):
            draw.text((4, size[1] + 2 + 14 * i), line, fill="white")
        info = PngInfo()
        info.add_text("Description", "; ".join(lines))
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path, pnginfo=info)
        return path


def overlay_paths(inputs: Sequence[Path], folder: Path) -> list[Path]:
    """One PNG per input, named after it (`chest.dcm` -> `chest.png`). Inputs of one name in different folders
    get as many parent folders as tell them apart (`ward-a/chest.dcm` -> `ward-a--chest.png`); a name still
    repeated (the same file given twice) gets `-2`, `-3`, ..."""
    parts = [_name_parts(Path(p)) for p in inputs]
    taken: dict[str, int] = {}
    out = []
    for mine in parts:
        depth = 1
        while depth < len(mine) and any(other != mine and other[-depth:] == mine[-depth:] for other in parts):
            depth += 1
        name = "--".join(mine[-depth:])
        taken[name] = taken.get(name, 0) + 1
        out.append(folder / (f"{name}.png" if taken[name] == 1 else f"{name}-{taken[name]}.png"))
    return out


def _name_parts(path: Path) -> tuple[str, ...]:
    """The path's folders and its stem, without the root: what an overlay's name is drawn from."""
    parts = path.parts[1:] if path.is_absolute() else path.parts
    return (*parts[:-1], path.stem or path.name)
