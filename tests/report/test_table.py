"""The terminal's front table: the task names its metrics and adds its own columns (issue 19: the nodule task
spoke X-ray)."""

from __future__ import annotations

import copy

from test_pick import DOC

from nas.report import front_table


def test_an_xray_front_shows_auc_and_no_task_columns():
    header = front_table(DOC).splitlines()[0].split()
    assert header[:4] == ["trial", "model", "val", "AUC"] and "CPM" not in header


def test_a_nodule_front_shows_cpm_and_names_the_patch_auc():
    doc = copy.deepcopy(DOC) | {"task": "nodule", "baselines": []}
    for n, m in enumerate(doc["members"]):
        m["spec"] = {"screen": {"family": "dsconv"}, "classify": {"family": "dsconv3d"}, "candidates": 8}
        for split in ("val", "test"):
            m["metrics"][split]["cpm"] = 0.25 + n / 10
    lines = front_table(doc).splitlines()
    assert "val CPM" in lines[0] and "test CPM" in lines[0] and "val patch AUC" in lines[0]
    assert lines[2].split()[1] == "dsconv+dsconv3d" and lines[2].split()[-2:] == ["0.250", "0.250"]
