"""Grad-CAM heatmaps: they point at what the model uses (a deletion check), every family has a layer to read
them from, and overlays say when they explain the float twin of an INT8 deployment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import SHARED, run_nas
from nas.clinical.calibration import calibrated_scores
from nas.clinical.heatmap import Explainer, overlay_paths, target_layer
from nas.compress import build_model
from nas.data import load_dataset
from nas.export import onnx_predict, onnx_session
from nas.spec import Spec, TrainingSpec
from nas.tasks.xray import preprocess

pytestmark = pytest.mark.slow

XRAY = SHARED / "data" / "chest_xray_224" / "test" / "NORMAL" / "IM-0001-0001.jpeg"
CASES, FRACTION, RANDOM_DRAWS = 50, 0.2, 5


def _masked(inputs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Masked pixels set to 0 after normalisation: the mid-grey the normalisation centres on."""
    out = inputs.copy()
    out[np.broadcast_to(masks[:, None], out.shape)] = 0.0
    return out


def _top(maps: np.ndarray, count: int) -> np.ndarray:
    order = np.argsort(maps.reshape(len(maps), -1), axis=1)[:, ::-1][:, :count]
    masks = np.zeros(maps.reshape(len(maps), -1).shape, bool)
    np.put_along_axis(masks, order, True, axis=1)
    return masks.reshape(maps.shape)


def test_masking_the_heatmap_lowers_the_score_more_than_masking_at_random(trained_export):
    """Deletion check on 50 test images: hiding the 20% of pixels Grad-CAM ranks highest must cost more score than
    hiding 20% chosen at random. The random masks are blobs of the same smoothness as a heatmap (a random 7x7
    field upsampled, as the 7x7 target layer's map is), since scattered single pixels are a different, harsher
    perturbation than hiding a region."""
    io = json.loads((trained_export / "io.json").read_text())
    images = load_dataset(None).split("test").images[:CASES]
    inputs = preprocess(images, io["input_shape"][2]).numpy()
    maps = Explainer.from_export(trained_export, io).heatmaps(inputs)
    assert maps.shape == (CASES, 28, 28) and maps.min() >= 0 and maps.max() <= 1
    session = onnx_session(trained_export / io["file"])

    def score(x: np.ndarray) -> np.ndarray:
        return calibrated_scores(onnx_predict(session, x), io["calibration"]["temperature"])

    count = int(FRACTION * maps[0].size)
    base = score(inputs)
    top_drop = base - score(_masked(inputs, _top(maps, count)))
    generator = torch.Generator().manual_seed(0)
    random_drops = []
    for _ in range(RANDOM_DRAWS):
        field = F.interpolate(torch.rand(CASES, 1, 7, 7, generator=generator), size=maps.shape[1:], mode="bilinear",
                              align_corners=False)[:, 0].numpy()
        random_drops.append(base - score(_masked(inputs, _top(field, count))))
    random_drop = np.mean(random_drops, axis=0)
    assert top_drop.mean() > random_drop.mean() + 0.02, (top_drop.mean(), random_drop.mean())
    assert (top_drop > random_drop).mean() > 0.6


@pytest.mark.parametrize("family, arch", [
    ("dsconv", {"stem_width": 8, "stem_stride": 2, "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}],
                "se": True, "activation": "hardswish", "dropout": 0.1}),
    ("mobilenetv3", {"size": "small", "width": 0.35, "depth": 0.5}),
    ("efficientnet", {"width": 0.25, "depth": 0.25}),
    ("resnet", {"variant": "resnet18"}),
])
def test_every_family_gives_a_spatial_heatmap(family, arch, tmp_path):
    spec = Spec(family=family, input_size=64, in_channels=1, num_classes=2, arch=arch,
                training=TrainingSpec(lr=1e-3, weight_decay=0, epochs=1, augment=0))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    (tmp_path / "spec.json").write_text(spec.to_json())
    torch.save(model.state_dict(), tmp_path / "model.pt")
    seen = []
    target_layer(model, family, spec.input_shape).register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    model(torch.zeros(1, *spec.input_shape))
    assert min(seen[0][-2:]) >= 4  # a map with spatial extent, not the 1x1 end of a timm net at 64 px
    maps = Explainer.from_export(tmp_path, {"precision": "fp32", "file": "model.onnx"}).heatmaps(
        torch.randn(2, *spec.input_shape).numpy())
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()


def test_predict_writes_an_overlay_per_input(exported_model, tmp_path):
    shutil.copyfile(XRAY, tmp_path / "chest.jpeg")
    heat = tmp_path / "heat"
    proc = run_nas("predict", "--model", str(exported_model), str(tmp_path / "chest.jpeg"), "--heatmaps", str(heat),
                   "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)["predictions"][0]
    assert row["heatmap"] == str(heat / "chest.png")
    overlay = Image.open(heat / "chest.png")
    assert overlay.mode == "RGB" and overlay.width == 512 and overlay.height > 512  # 224 px shown at 512, caption
    assert "Grad-CAM (dsconv)" in overlay.text["Description"] and "float twin" not in overlay.text["Description"]
    pixels = np.asarray(overlay)[:512].astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 50  # coloured by the heatmap, not the grey X-ray


def test_int8_overlay_says_it_comes_from_the_float_twin(exported_model, tmp_path):
    card = json.loads((exported_model / "model_card.json").read_text())
    shutil.copytree(exported_model.parent / "results", tmp_path / "results")
    exported = run_nas("export", "--study", card["study"], "--trial", str(card["trial"]), "--out", "int8",
                       "--format", "int8", "--max-auc-drop", "1", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    shutil.copyfile(XRAY, tmp_path / "chest.jpeg")
    proc = run_nas("predict", "--model", "int8", "chest.jpeg", "--heatmaps", "heat", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    note = Image.open(tmp_path / "heat" / "chest.png").text["Description"]
    assert "Grad-CAM from the float twin (model.pt) of the deployed INT8 model.int8.onnx" in note


def test_overlays_of_one_name_in_different_folders_say_which_is_which(tmp_path):
    inputs = [Path("ward-a/2024/chest.dcm"), Path("ward-b/2024/chest.dcm"), Path("ward-a/knee.png"),
              Path("/scans/ward-a/2024/chest.png"), Path("ward-a/knee.png")]
    names = [p.name for p in overlay_paths(inputs, tmp_path)]
    assert names == ["ward-a--2024--chest.png", "ward-b--2024--chest.png", "knee.png", "scans--ward-a--2024--chest.png",
                     "knee-2.png"]
    assert [p.name for p in overlay_paths([Path("a/chest.dcm"), Path("b/lung.dcm")], tmp_path)] == ["chest.png",
                                                                                                      "lung.png"]
