"""One exported model shared by the clinical-loop tests (calibration, predict, heatmaps, evaluate, shadow, monitor).

`exported_model` is the folder `nas export` wrote: io.json, model.onnx, model.pt, spec.json, model card. Its parent
is the working directory of the search, so `exported_model.parent / "results" / STUDY` is the study.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import QUICK_PROFILE, REPO, run_nas, shared_once

STUDY = "clinical"
# One trial, which is the space's enqueued baseline (the dsconv reference net): one epoch gives it a validation
# AUC near 0.9 in about 10 s, strong enough for calibration and Grad-CAM checks to mean something.
SEARCH = ("search", "--space", "xray-tiny", "--hardware", str(QUICK_PROFILE), "--epochs", "1", "--trials", "1",
          "--study", STUDY, "--no-progress", "--json")


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export folder of a tiny search's trial on the bundled PneumoniaMNIST (fp32 ONNX, calibrated)."""

    def make(cwd: Path) -> None:
        searched = run_nas(*SEARCH, cwd=cwd)
        assert searched.returncode == 0, searched.stderr
        trial = json.loads(searched.stdout)["members"][0]["trial"]
        exported = run_nas("export", "--study", STUDY, "--trial", str(trial), "--out", str(cwd / "export"), cwd=cwd)
        assert exported.returncode == 0, exported.stderr

    return shared_once(tmp_path_factory, "clinical-study", make) / "export"


@pytest.fixture(scope="session")
def trained_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `exported_model`, trained for 3 epochs (validation AUC about 0.98, about 20 s on two idle cores): for
    checks that need a model whose scores spread and whose heatmaps mean something. Its study is "trained"."""
    import yaml

    def make(cwd: Path) -> None:
        space = yaml.safe_load((REPO / "search_spaces" / "xray-tiny.yaml").read_text())
        space["name"], space["training"]["epochs"] = "xray-tiny-3-epochs", 3
        (cwd / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
        searched = run_nas("search", "--space", "space.yaml", "--hardware", str(QUICK_PROFILE), "--trials", "1",
                           "--study", "trained", "--no-progress", "--json", cwd=cwd)
        assert searched.returncode == 0, searched.stderr
        trial = json.loads(searched.stdout)["members"][0]["trial"]
        exported = run_nas("export", "--study", "trained", "--trial", str(trial), "--out", "export", cwd=cwd)
        assert exported.returncode == 0, exported.stderr

    return shared_once(tmp_path_factory, "clinical-trained", make) / "export"


def write_v1_log(path: Path) -> Path:
    """A shadow log as nas wrote it before rows were hash-chained (schema version 1): one model, one prediction."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE models (sha256 TEXT PRIMARY KEY, export_dir TEXT NOT NULL, file TEXT NOT NULL,
                                 io_json TEXT NOT NULL, first_seen_utc TEXT NOT NULL);
            CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, utc TEXT NOT NULL, model_sha256 TEXT NOT
                NULL, input TEXT NOT NULL, sop_instance_uid TEXT, score REAL NOT NULL, decision INTEGER NOT NULL,
                refer INTEGER NOT NULL, ms REAL NOT NULL, label INTEGER);
            INSERT INTO models VALUES ('abc', '/export', 'model.onnx', '{"threshold": 0.5}', '2026-01-01T00:00:00');
            INSERT INTO predictions VALUES (1, '2026-01-01T00:00:01', 'abc', 'a.png', NULL, 0.8, 1, 0, 2.0, 1);
            PRAGMA user_version = 1;""")
    return path
