"""One exported model shared by the clinical-loop tests (calibration, predict, heatmaps, evaluate, shadow, monitor).

`exported_model` is the folder `nas export` wrote: io.json, model.onnx, model.pt, spec.json, model card. Its parent
is the working directory of the search, so `exported_model.parent / "results" / STUDY` is the study.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import QUICK_PROFILE, REPO, run_nas

STUDY = "clinical"
# One trial, which is the space's enqueued baseline (the dsconv reference net): one epoch gives it a validation
# AUC near 0.9 in about 10 s, strong enough for calibration and Grad-CAM checks to mean something.
SEARCH = ("search", "--space", "xray-tiny", "--hardware", str(QUICK_PROFILE), "--epochs", "1", "--trials", "1",
          "--study", STUDY, "--no-progress", "--json")


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export folder of a tiny search's trial on the bundled PneumoniaMNIST (fp32 ONNX, calibrated)."""
    cwd = tmp_path_factory.mktemp("clinical-study")
    searched = run_nas(*SEARCH, cwd=cwd)
    assert searched.returncode == 0, searched.stderr
    trial = json.loads(searched.stdout)["members"][0]["trial"]
    out = cwd / "export"
    exported = run_nas("export", "--study", STUDY, "--trial", str(trial), "--out", str(out), cwd=cwd)
    assert exported.returncode == 0, exported.stderr
    return out


@pytest.fixture(scope="session")
def trained_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `exported_model`, trained for 3 epochs (validation AUC about 0.98, about 20 s on two idle cores): for
    checks that need a model whose scores spread and whose heatmaps mean something. Its study is "trained"."""
    import yaml

    cwd = tmp_path_factory.mktemp("clinical-trained")
    space = yaml.safe_load((REPO / "search_spaces" / "xray-tiny.yaml").read_text())
    space["name"], space["training"]["epochs"] = "xray-tiny-3-epochs", 3
    (cwd / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    searched = run_nas("search", "--space", "space.yaml", "--hardware", str(QUICK_PROFILE), "--trials", "1",
                       "--study", "trained", "--no-progress", "--json", cwd=cwd)
    assert searched.returncode == 0, searched.stderr
    trial = json.loads(searched.stdout)["members"][0]["trial"]
    exported = run_nas("export", "--study", "trained", "--trial", str(trial), "--out", "export", cwd=cwd)
    assert exported.returncode == 0, exported.stderr
    return cwd / "export"
