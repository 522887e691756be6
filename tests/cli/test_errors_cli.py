"""Bad input gets a one-line error naming the bad value, the valid options and the closest match."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import QUICK_PROFILE, run_nas

FAST = ["--hardware", str(QUICK_PROFILE), "--epochs", "1", "--trials", "1"]


@pytest.mark.parametrize("args,expected", [
    (["--task", "xrya"], "unknown task 'xrya' (did you mean 'xray'?); valid: nodule, xray"),
    (["--hardware", "cpuu"], "unknown hardware profile 'cpuu' (did you mean 'cpu'?)"),
    (["--space", "xray-tiniy"], "unknown search space 'xray-tiniy' (did you mean 'xray-tiny'?)"),
    (["--objectives", "auc,latency"], "unknown objective 'latency'"),
    (["--data", "no/such/file.npz"], "data not found: no/such/file.npz"),
])
def test_unknown_names_and_paths(tmp_path, args, expected):
    hardware = [] if "--hardware" in args else ["--hardware", str(QUICK_PROFILE)]
    space = [] if "--space" in args else ["--space", "xray-tiny"]
    proc = run_nas("search", *space, *hardware, "--epochs", "1", "--trials", "1", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert proc.stdout == ""
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*/trials"))


def test_malformed_space_names_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntask: xray\ninput_size: 28\nfamilies:\n  dsconv: {stem_width: [8\n")
    proc = run_nas("search", "--space", str(bad), *FAST, cwd=tmp_path)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "line" in proc.stderr
    bad.write_text("name: bad\ntask: xray\ninput_size: 28\nfamilies:\n  dsconv:\n    stem_width: {choices: []}\n"
                   "training: {lr: 0.01, weight_decay: 0, epochs: 1, augment: 0}\n")
    proc = run_nas("search", "--space", str(bad), *FAST, cwd=tmp_path)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "families.dsconv.stem_width" in proc.stderr


def test_single_class_data_is_refused(tmp_path):
    arrays = {f"{s}_images": np.zeros((4, 28, 28), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.zeros((4, 1), np.uint8) for s in ("train", "val", "test")})
    np.savez(tmp_path / "one.npz", **arrays)
    proc = run_nas("search", "--space", "xray-tiny", *FAST, "--data", str(tmp_path / "one.npz"), cwd=tmp_path)
    assert proc.returncode == 2 and "one.npz: the training split has a single class" in proc.stderr
