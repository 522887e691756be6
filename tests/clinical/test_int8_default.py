"""INT8 export under the product's default accuracy rule (--max-auc-drop 0.01), on a trained model.

The rule does not reliably hold on the test suite's models, so this checks that it is enforced either way: the
INT8 artifact ships only within 0.01 AUC of the recorded float figure, and otherwise the export refuses in one line
naming the drop. Measured here: a 1-epoch model whose validation logits span 0.022 gets 30 distinct INT8 scores for
300 cases (AUC 0.7819 -> 0.7710, refused); this 3-epoch model went 0.9835 -> 0.9304 (refused). The end-to-end test
(tests/cli/test_search_cli.py) therefore exports with --max-auc-drop 0.05.
"""

import json
import re

import pytest

from conftest import run_nas

pytestmark = pytest.mark.slow  # the trained export comes from a real (tiny) 3-epoch search


def test_int8_export_is_held_to_the_default_auc_rule(trained_export, tmp_path):
    cwd = trained_export.parent
    trial = json.loads((cwd / "results" / "trained" / "pareto.json").read_text())["members"][0]["trial"]
    exported = run_nas("export", "--study", "trained", "--trial", str(trial), "--out", str(tmp_path / "int8"),
                       "--format", "int8", "--json", cwd=cwd)  # no --max-auc-drop: the product's 0.01
    if exported.returncode == 0:
        card = json.loads(exported.stdout)
        assert card["deployed_file"] == "model.int8.onnx"
        assert card["metrics"]["val_recorded"]["auc"] - card["metrics"]["val"]["auc"] <= 0.01
        return
    refused = re.fullmatch(r"error: the onnxruntime int8 artifact's validation AUC (\S+) is (\S+) below the "
                           r"recorded (\S+) "
                           r"\(allowed: 0\.01\); not shipped as int8\n", exported.stderr)
    assert exported.returncode == 2 and refused, exported.stderr
    auc, drop, recorded = (float(x) for x in refused.groups())
    assert drop > 0.01 and recorded - auc == pytest.approx(drop, abs=2e-4)
    assert not (tmp_path / "int8" / "model_card.json").exists() and exported.stdout == ""
