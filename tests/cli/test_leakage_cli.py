"""Identical images across splits are reported when a search starts (settled point 14)."""

import json

import numpy as np
import pytest

from conftest import QUICK_PROFILE, REPO, SMALL_XRAY, run_nas


@pytest.mark.slow
def test_a_planted_duplicate_is_reported_at_search_start(tmp_path):
    with np.load(SMALL_XRAY) as z:
        arrays = dict(z)
    arrays["val_images"][3] = arrays["train_images"][10]
    arrays["test_images"][:2] = arrays["train_images"][20:22]
    leaky = tmp_path / "leaky.npz"
    np.savez(leaky, **arrays)
    proc = run_nas("search", "--space", str(REPO / "tests/fixtures/xray-one-arch.yaml"), "--data", str(leaky),
                   "--hardware", str(QUICK_PROFILE), "--epochs", "1", "--no-baselines", "--no-progress",
                   "--study", "leak", "--trials", "1", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "leakage" in line]
    shared = {pair: len({i.tobytes() for i in arrays[f"{a}_images"]} & {i.tobytes() for i in arrays[f"{b}_images"]})
              for pair, (a, b) in {"train/val": ("train", "val"), "train/test": ("train", "test")}.items()}
    assert shared["train/test"] == 2 and shared["train/val"] >= 1  # PneumoniaMNIST itself repeats a few images
    assert warning == [f"warning: leakage: {leaky} has identical images in two splits (train/val "
                       f"{shared['train/val']}, train/test 2); validation and test figures on them are optimistic"]
    assert json.loads(proc.stdout)["members"]  # a warning, not a refusal; stdout stays one JSON document
