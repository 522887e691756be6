"""`nas detect` states the model's own validation and test CPM, and warns when the model is weak."""

from __future__ import annotations

import json

from nas.tasks.nodule.detect import WEAK_CPM, model_figures


def test_an_exports_card_gives_the_figures_and_a_weak_test_cpm_warns(tmp_path):
    (tmp_path / "model_card.json").write_text(json.dumps({"metrics": {"val": {"cpm": 0.31}, "test": {"cpm": 0.0}}}))
    figures = model_figures(tmp_path)
    assert figures["val_cpm"] == 0.31 and figures["test_cpm"] == 0.0
    assert figures["warning"] == f"weak model: test CPM 0.000 is under {WEAK_CPM}; its candidates mean little"


def test_a_trial_folder_without_test_figures_is_judged_on_validation(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"metrics": {"val": {"cpm": 0.65}}}))
    assert model_figures(tmp_path) == {"val_cpm": 0.65, "test_cpm": None, "warning": None}
    (tmp_path / "test_metrics.json").write_text(json.dumps({"cpm": 0.12}))
    assert model_figures(tmp_path)["warning"].startswith("weak model: test CPM 0.120")


def test_a_model_without_recorded_figures_says_so(tmp_path):
    assert model_figures(tmp_path)["warning"] == "this model's CPM is not recorded: its accuracy is unknown"
