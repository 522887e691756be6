"""INT8 export under the product's default accuracy rule (--max-auc-drop 0.01), on a trained model.

This 3-epoch model once went 0.9835 -> 0.9301 in INT8 and was refused. The cause, measured: ONNX Runtime's uint8 x
int8 convolution saturates 16-bit pair sums on x86 CPUs without VNNI, at the stem, whose input spans the full pixel
range (nas/compress/quantize.py). With 7-bit weights it goes 0.9835 -> 0.9832, so the default rule now holds and
the INT8 artifact ships; the refusal is checked with a rule no artifact meets.
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
    assert exported.returncode == 0, exported.stderr
    card = json.loads(exported.stdout)
    assert card["deployed_file"] == "model.int8.onnx"
    assert card["metrics"]["val_recorded"]["auc"] - card["metrics"]["val"]["auc"] <= 0.01


def test_an_int8_export_that_breaks_the_rule_is_refused_in_one_line(trained_export, tmp_path):
    from nas.errors import StudyError
    from nas.report.package import export_trial

    results = trained_export.parent / "results"
    trial = json.loads((results / "trained" / "pareto.json").read_text())["members"][0]["trial"]
    with pytest.raises(StudyError) as refused:  # a negative allowance: every artifact breaks it
        export_trial(results, "trained", trial, tmp_path / "int8", fmt="int8", max_auc_drop=-1.0)
    parts = re.fullmatch(r"the onnxruntime int8 artifact's validation AUC (\S+) is (\S+) below the recorded (\S+) "
                         r"\(allowed: -1\.0\); not shipped as int8", str(refused.value))
    assert parts, str(refused.value)
    auc, drop, recorded = (float(x) for x in parts.groups())
    assert recorded - auc == pytest.approx(drop, abs=2e-4)
    assert not (tmp_path / "int8" / "model_card.json").exists()
