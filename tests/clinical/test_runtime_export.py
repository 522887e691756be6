"""Export, predict and evaluate follow the search's runtime choice (settled point 19): a trial whose choice is
OpenVINO ships OpenVINO's IR, verified against PyTorch, and `nas predict` / `nas evaluate` run it with OpenVINO.

The study is the clinical fixture's (a copy): its trial's recorded choice is replaced by one made on fixed
timings where OpenVINO is fastest, which is what a search on a machine where OpenVINO wins would have stored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clinical.conftest import STUDY
from conftest import SHARED, run_nas
from nas.clinical.evaluate import evaluate_export
from nas.clinical.predict import DeployedModel, predict
from nas.data import BUNDLED_PNEUMONIAMNIST
from nas.hardware.runtime_choice import RuntimeTiming, choose
from nas.report.package import export_trial
from nas.search.result import TrialResult

pytestmark = pytest.mark.slow  # the exported model comes from a real (tiny) search
XRAYS = [SHARED / "data" / "chest_xray_224" / "test" / cls / name for cls, name in
         (("PNEUMONIA", "person100_bacteria_475.jpeg"), ("NORMAL", "IM-0001-0001.jpeg"))]


@pytest.fixture(scope="module")
def openvino_study(exported_model, tmp_path_factory) -> tuple[Path, int]:
    """A copy of the clinical study whose trial's choice is OpenVINO (fp32 and int8 both faster there)."""
    results = tmp_path_factory.mktemp("openvino-study") / "results"
    shutil.copytree(exported_model.parent / "results" / STUDY, results / STUDY)
    trial = json.loads((exported_model / "model_card.json").read_text())["trial"]
    path = results / STUDY / "trials" / str(trial) / "result.json"
    result = TrialResult.model_validate_json(path.read_text())
    m = result.measurement

    def timing(runtime, precision, p50):
        return RuntimeTiming(runtime=runtime, precision=precision, measurement=m.model_copy(
            update={"backend": runtime, "precision": precision, "p50_ms": p50, "p95_ms": p50 * 1.2}))

    timings = [timing("onnxruntime", "fp32", 0.9), timing("onnxruntime", "int8", 0.8), timing("openvino", "fp32", 0.5),
               timing("openvino", "int8", 0.3)]
    choice = choose(timings, ("fp32",))
    assert (choice.runtime, choice.precision) == ("openvino", "fp32")
    path.write_text(result.model_copy(update={"runtime_choice": choice,
                                              "measurement": choice.chosen}).model_dump_json())
    (path.parent / "remeasured.json").write_text(choice.chosen.model_dump_json())  # the final re-measure's runtime
    return results, trial


@pytest.fixture(scope="module")
def openvino_export(openvino_study, tmp_path_factory) -> tuple[Path, dict]:
    results, trial = openvino_study
    out = tmp_path_factory.mktemp("openvino-export")
    return out, export_trial(results, STUDY, trial, out)


def test_export_writes_the_chosen_runtimes_artifact_verified(openvino_export):
    out, card = openvino_export
    io = json.loads((out / "io.json").read_text())
    assert (io["runtime"], io["precision"], io["file"]) == ("openvino", "fp32", "model.xml")
    assert (out / "model.bin").is_file() and {"model.xml", "model.bin", "model.onnx"} <= set(card["files"])
    parity = card["deployed_parity"]
    assert (parity["runtime"], parity["file"]) == ("openvino", "model.xml")
    assert parity["max_abs_diff"] <= parity["tolerance"] == 1e-3
    assert card["runtime"] == "openvino" and card["runtime_choice"]["runtime"] == "openvino"
    assert {(t["runtime"], t["precision"]) for t in card["runtime_choice"]["timings"]} == {
        ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")}
    assert card["latency"]["backend"] == "openvino"  # the chosen runtime's measurement, not ONNX Runtime's
    text = (out / "model_card.md").read_text()
    assert "openvino" in text.lower()


def test_predict_and_evaluate_run_it_with_openvino(openvino_export, exported_model):
    """Same weights, other runtime: scores agree with the ONNX Runtime export's, and the audit names OpenVINO
    (ONNX Runtime cannot load an .xml, so a score at all means OpenVINO ran it)."""
    out, _ = openvino_export
    deployed, reference = DeployedModel.load(out), DeployedModel.load(exported_model)
    assert (deployed.runtime, reference.runtime) == ("openvino", "onnxruntime")
    scores = [p.score for p in predict(deployed, XRAYS, progress=False)]
    expected = [p.score for p in predict(reference, XRAYS, progress=False)]
    assert None not in scores and np.allclose(scores, expected, atol=1e-3)
    audit = evaluate_export(out, BUNDLED_PNEUMONIAMNIST, split="test")
    assert (audit["model"]["runtime"], audit["model"]["file"]) == ("openvino", "model.xml")
    card = json.loads((out / "model_card.json").read_text())
    assert audit["metrics"]["auc"]["value"] == pytest.approx(card["metrics"]["test"]["auc"], abs=1e-6)


def test_int8_export_is_openvinos_nncf_ir(openvino_study, tmp_path):
    results, trial = openvino_study
    card = export_trial(results, STUDY, trial, tmp_path, fmt="int8", max_auc_drop=1.0)
    io = json.loads((tmp_path / "io.json").read_text())
    assert (io["runtime"], io["precision"], io["file"]) == ("openvino", "int8", "model.int8.xml")
    assert card["deployed_parity"]["tolerance"] is None and card["deployed_parity"]["max_abs_diff"] < 0.2
    assert (card["latency"]["backend"], card["latency"]["precision"]) == ("openvino", "int8")  # measured now
    audit = evaluate_export(tmp_path, BUNDLED_PNEUMONIAMNIST, split="test")
    assert (audit["model"]["runtime"], audit["model"]["precision"]) == ("openvino", "int8")
    assert audit["metrics"]["auc"]["value"] == pytest.approx(card["metrics"]["test"]["auc"], abs=1e-6)


def test_export_refuses_an_unknown_runtime(openvino_study, tmp_path):
    from nas.errors import ConfigError

    results, trial = openvino_study
    with pytest.raises(ConfigError, match="unknown runtime 'openvin'.*did you mean 'openvino'"):
        export_trial(results, STUDY, trial, tmp_path, runtime="openvin")


def test_export_runtime_flag_overrides_the_choice(openvino_study, tmp_path):
    """`nas export --runtime onnxruntime` ships the ONNX file for ONNX Runtime although the search chose OpenVINO."""
    results, trial = openvino_study
    done = run_nas("export", "--results", str(results), "--study", STUDY, "--trial", str(trial), "--out",
                   str(tmp_path / "ort"), "--runtime", "onnxruntime", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    io = json.loads((tmp_path / "ort" / "io.json").read_text())
    assert (io["runtime"], io["precision"], io["file"]) == ("onnxruntime", "fp32", "model.onnx")
    assert not (tmp_path / "ort" / "model.xml").exists()
    assert DeployedModel.load(tmp_path / "ort").runtime == "onnxruntime"
