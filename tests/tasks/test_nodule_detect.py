"""`nas detect` states the model's own validation and test CPM, warns when the model is weak, and with --truth
says which reference nodules it found and at which rank."""

from __future__ import annotations

import json

import pytest

from nas.errors import DataError
from nas.tasks.nodule.detect import WEAK_CPM, judge, model_figures, reference_of


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


def _csv(path, rows):
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "".join(f"{','.join(map(str, r))}\n" for r in rows))
    return path


def test_truth_gives_each_nodules_rank_and_labels_each_candidate(tmp_path):
    """Two nodules of the series (one of another series is ignored), an excluded finding beside the first file: the
    first nodule is hit at rank 3 behind a false positive and an excluded finding, the second is missed."""
    annotations = _csv(tmp_path / "annotations.csv", [("s1", 0, 0, 0, 10.0), ("s1", 50, 0, 0, 6.0),
                                                      ("s2", 0, 0, 0, 30.0)])
    _csv(tmp_path / "annotations_excluded.csv", [("s1", 100, 0, 0, -1)])
    reference = reference_of(annotations, "s1")
    assert len(reference.truth.nodules) == 2 and reference.excluded == tmp_path / "annotations_excluded.csv"
    candidates = [{"world_mm": [0, 80, 0], "score": 0.9}, {"world_mm": [103, 0, 0], "score": 0.8},
                  {"world_mm": [3, 3, 0], "score": 0.7}, {"world_mm": [54, 0, 0], "score": 0.6}]
    truth = judge(candidates, reference)
    assert [c["truth"] for c in candidates] == ["false positive", "excluded", "nodule 1", "false positive"]
    first, second = truth["nodules"]
    assert first == {"world_mm": [0.0, 0.0, 0.0], "diameter_mm": 10.0, "found": True, "rank": 3, "score": 0.7,
                     "false_positives_above": 1}
    assert not second["found"] and second["rank"] is None  # 4 mm away, radius 3 mm
    assert truth["found"] == 1 and truth["false_positives"] == 2


def test_truth_file_that_is_missing_or_not_luna16_is_refused(tmp_path):
    with pytest.raises(DataError, match="cannot be read"):
        reference_of(tmp_path / "nope.csv", "s1")
    (tmp_path / "bad.csv").write_text("uid,x,y,z\n1,2,3,4\n")
    with pytest.raises(DataError, match="missing column"):
        reference_of(tmp_path / "bad.csv", "s1")
