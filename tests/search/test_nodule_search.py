"""A short nodule search end to end: a schema-valid front timed per whole scan, the dense baseline measured on
the same scans, export, and `nas detect --json` on a shared scan."""

from __future__ import annotations

import json

import jsonschema
import optuna
import pytest
from _regression import assert_same_as_before
from conftest import FIXTURES, QUICK_PROFILE, REPO, SHARED, run_nas, schema

from nas.hardware.runtime_choice import RuntimeChoice
from nas.report.html import write_report
from nas.report.package import open_trial
from nas.search.final import finalize
from nas.search.runner import SearchConfig, prepare, run_search
from nas.tasks.nodule.export import export_nodule_trial

SCANS = SHARED / "data" / "lidc"
ANNOTATIONS = SHARED / "data" / "luna16" / "annotations.csv"
pytestmark = pytest.mark.skipif(not SCANS.is_dir(), reason=f"needs the shared CT scans in {SCANS}")
STAGES = {"preprocess", "screen", "classify"}
LUNA16_0003 = [(72.3, 76.9, -190.5, 21.5), (23.5, -47.6, -172.3, 8.8), (-47.4, -30.2, -169.6, 12.8)]
"""x, y, z (mm) and diameter (mm) of LIDC-IDRI-0003's LUNA16 nodules (shared data README)."""


DENSE_LIMIT_S = 100
"""The dense baseline's pass limit here: the tiny model's quarter-window pass (about half a minute) runs, its
eighth-window pass (over a million windows, about 5 min) is refused."""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from nas.tasks.nodule import pipeline

    results = tmp_path_factory.mktemp("results")
    config = SearchConfig(task="nodule", hardware=str(QUICK_PROFILE), space=str(FIXTURES / "nodule-tiny.yaml"),
                          study="nodule-tiny", results=results, trials=2, epochs=1, baselines=False, progress=False,
                          data=str(SCANS))
    run = prepare(config)
    run_search(config, run)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "DENSE_REFINE_LIMIT_S", DENSE_LIMIT_S)
        return results, finalize(run, log=lambda _: None)


def test_front_is_schema_valid_with_per_scan_latency(study):
    _, doc = study
    jsonschema.validate(doc, schema("pareto.v1.schema.json"))
    assert doc["task"] == "nodule" and doc["members"]
    for m in doc["members"]:
        lat = m["latency"]
        assert set(lat["stages"]) == STAGES
        assert lat["scan_ms"] == pytest.approx(sum(s["p50_ms"] for s in lat["stages"].values()))
        assert lat["p50_ms"] == pytest.approx(lat["scan_ms"]) and lat["batch"] == 1
        assert lat["precision"] in ("fp32", "mixed")  # stage 1 ships fp32; "mixed" when stage 2 is int8
        assert lat["stages"]["classify"]["batch"] == 2  # nodule-tiny's views: both of a candidate's views at once
        for split in ("val", "test"):
            assert set(m["metrics"][split]["sensitivity_at_fp"]) == {"0.125", "0.25", "0.5", "1", "2", "4", "8"}
        assert m["spec"]["screen"]["family"] == "dsconv" and m["spec"]["classify"]["family"] == "dsconv3d"
        patch = m["metrics"]["test"]["patch"]  # each stage on the test patients' examples, with its interval
        assert set(patch) == {"screen", "classify", "classify_vs_screen_fp"} and "patch" not in m["metrics"]["val"]
        for figures in patch.values():
            low, high = figures["auc_95ci"]
            assert 0 <= low <= figures["auc"] <= high <= 1 and 0 < figures["positives"] < figures["examples"]
    assert doc["data"]["scans"] == {"train": 1, "val": 0, "test": 1}
    assert all(m["latency"]["method"] == "composed" for m in doc["members"])


def test_the_same_seeds_give_the_same_trials_and_front_fields_as_before_the_task_plug_in(study):
    results, doc = study
    stored = optuna.load_study(study_name="nodule-tiny", storage=f"sqlite:///{results / 'nodule-tiny' / 'study.db'}")
    assert_same_as_before("nodule-tiny", stored.trials, doc)


def test_the_report_shows_the_nodule_front(study):
    results, doc = study
    page = write_report(results / "nodule-tiny").read_text()
    assert all(f"trial {m['trial']}" in page for m in doc["members"])


def test_export_through_the_cli_writes_both_stages(study, tmp_path):
    results, doc = study
    done = run_nas("export", "--study", "nodule-tiny", "--trial", str(doc["knee_trial"]), "--out",
                   str(tmp_path / "cli-model"), "--results", str(results), "--json", cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert {"screen/model.onnx", "classify/model.onnx"} <= set(json.loads(done.stdout)["files"])


def test_dense_baseline_is_measured_on_the_same_scans(study):
    _, doc = study
    dense = doc["dense_baseline"]
    assert dense["trial"] == doc["knee_trial"]
    assert set(dense["latency"]["stages"]) == {"preprocess", "classify"}
    assert dense["latency"]["stages"]["classify"]["runs"] > 100  # every lung window, in batches
    assert dense["speedup"] == pytest.approx(dense["latency"]["p50_ms"] / dense["two_stage_scan_ms"])
    assert 0 <= dense["froc"]["cpm"] <= 1


def test_dense_baseline_steps_finer_until_it_finds_as_much_as_the_pipeline(study):
    _, doc = study
    dense = doc["dense_baseline"]
    strides = dense["strides"]
    pipeline_found = dense["two_stage_froc"]["sensitivity_at_fp"]["8"]
    found = [s["froc"]["sensitivity_at_fp"]["8"] for s in strides]
    assert strides[0]["stride"] == 8  # nodule-tiny's 16-voxel patches, half-overlapping
    assert all(f < pipeline_found for f in found[:-1])  # a finer stride only while the coarser one found less
    assert dense["equal_sensitivity"] == (found[-1] >= pipeline_found)
    # it stops before the finest stride only once it finds as much, or when that pass would take too long here
    assert len(strides) == 3 or dense["equal_sensitivity"] or dense["finer_skipped"]
    if dense["finer_skipped"]:
        assert not dense["equal_sensitivity"] and f"(limit {DENSE_LIMIT_S // 60} min)" in dense["finer_skipped"]
    assert dense["stride"] == strides[-1]["stride"] and dense["froc"] == strides[-1]["froc"]
    assert dense["latency"]["scan_ms"] == pytest.approx(strides[-1]["scan_ms"])
    for coarse, fine in zip(strides, strides[1:]):
        assert fine["stride"] == coarse["stride"] // 2 and fine["windows_per_scan"] > 6 * coarse["windows_per_scan"]
        assert fine["scan_ms"] > coarse["scan_ms"]


def test_dense_baseline_is_timed_on_the_runtime_the_second_stage_ships_on(study, monkeypatch):
    """The baseline differs from the pipeline by screening alone: a stage 2 shipped on OpenVINO is timed densely on
    OpenVINO too, not on the profile's ONNX Runtime. (One half-window pass: a finer one is refused as too slow.)"""
    from nas.hardware import load_profile, open_target
    from nas.tasks.nodule import dense_baseline, pipeline
    from nas.tasks.nodule.data import nodule_data
    from nas.tasks.nodule.pipeline import CLASSIFY_DIR, DEPLOYED_ONNX
    from nas.tasks.nodule.space import NoduleSpec

    results, doc = study
    folder, result, task, dataset = open_trial(results, "nodule-tiny", doc["knee_trial"])
    chosen = RuntimeChoice(runtime="openvino", precision="fp32", reason="test: the search chose OpenVINO", timings=[])
    monkeypatch.setattr(pipeline, "DENSE_REFINE_LIMIT_S", 0)
    dense = dense_baseline(open_target(load_profile(str(QUICK_PROFILE))), NoduleSpec.model_validate(result.pipeline),
                           folder / CLASSIFY_DIR / DEPLOYED_ONNX, nodule_data(dataset), "test", 1.01, chosen)
    assert dense["latency"]["backend"] == "openvino"
    first = doc["dense_baseline"]["strides"][0]
    assert (dense["stride"], dense["froc"]) == (first["stride"], first["froc"])  # the same model finds the same
    assert not dense["equal_sensitivity"] and dense["finer_skipped"].startswith("stride 4: about ")


def test_patch_figures_add_the_nodules_against_whole_scan_false_positives(study):
    # Two made-up scan false positives, one scoring 0 and one 1: every nodule ranks between them, so AUC 0.5.
    from nas.tasks.nodule.pipeline import CLASSIFY_DIR, DEPLOYED_ONNX, SCREEN_DIR, TwoStage
    from nas.tasks.nodule.space import NoduleSpec

    results, doc = study
    folder, result, task, dataset = open_trial(results, "nodule-tiny", doc["knee_trial"])
    detector = TwoStage(NoduleSpec.model_validate(result.pipeline), folder / SCREEN_DIR / DEPLOYED_ONNX,
                        folder / CLASSIFY_DIR / DEPLOYED_ONNX)
    figures = task.patch_figures(detector, dataset, [0.0, 1.0])
    scan, volume = figures["classify_vs_scan_fp"], figures["classify_vs_screen_fp"]
    assert scan["positives"] == volume["positives"] > 0 and scan["examples"] == scan["positives"] + 2
    assert scan["auc"] == pytest.approx(0.5, abs=0.05)
    assert "classify_vs_scan_fp" not in doc["members"][0]["metrics"]["test"]["patch"]  # the search gives none


def test_export_and_detect_json(study, tmp_path):
    results, doc = study
    trial = doc["knee_trial"]
    card = export_nodule_trial(*open_trial(results, "nodule-tiny", trial), tmp_path / "model")
    assert {"pipeline.json", "pipeline_config.json", "screen/model.onnx", "classify/model.onnx",
            "model_card.md"} <= set(card["files"])
    assert max(card["parity_max_abs_diff"].values()) < 1e-3
    card_text = (tmp_path / "model" / "model_card.md").read_text()
    assert "{'" not in card_text  # no raw Python dicts in the card
    assert "Each stage on the test patients' examples" in card_text and "screen AUC" in card_text
    scan = SCANS / "LIDC-IDRI-0003"
    done = run_nas("detect", "--model", str(tmp_path / "model"), str(scan), "--json", "--truth", str(ANNOTATIONS),
                   cwd=REPO)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)  # exactly one JSON document on stdout; progress went to stderr
    jsonschema.validate(found, schema("detect.v1.schema.json"))
    assert found["series_uid"].endswith("170706757615202213033480003264")
    assert {"load", "preprocess", "screen", "classify", "total"} <= set(found["timing_ms"])
    scores = [c["score"] for c in found["candidates"]]
    # trained on LIDC nodules of other patients (one epoch), it finds at least one of 0003's three LUNA16 nodules
    # among its candidates (how high it ranks it is the benchmark's question)
    hits = [n for n, (*centre, diameter) in enumerate(LUNA16_0003) if any(
        sum((a - b) ** 2 for a, b in zip(c["world_mm"], centre)) ** 0.5 <= diameter / 2 for c in found["candidates"])]
    assert hits, [c["world_mm"] for c in found["candidates"]]
    truth = found["truth"]  # --truth: the same judgement, by rank
    assert len(truth["nodules"]) == 3 and [n for n, nodule in enumerate(truth["nodules"]) if nodule["found"]] == hits
    for n in hits:
        assert f"nodule {n + 1}" in found["candidates"][truth["nodules"][n]["rank"] - 1]["truth"]
    assert truth["false_positives"] == sum(c["truth"] == "false positive" for c in found["candidates"])
    assert scores == sorted(scores, reverse=True) and len(scores) <= card["spec"]["candidates"]
    assert "screened" in done.stderr
    test_cpm = card["metrics"]["test"]["cpm"]
    assert found["model"]["test_cpm"] == test_cpm and found["model"]["val_cpm"] == card["metrics"]["val"].get("cpm")
    assert ("warning: weak model: test CPM" in done.stderr) == (test_cpm < 0.2)


def test_the_export_ships_the_second_stage_on_the_runtime_the_search_chose(study, tmp_path):
    """A second stage the search chose to run on OpenVINO ships as OpenVINO's IR, named in shipped.json, and
    `nas detect` runs it there, finding what the ONNX Runtime export finds."""
    results, doc = study
    folder, result, task, dataset = open_trial(results, "nodule-tiny", doc["knee_trial"])
    chosen = RuntimeChoice(runtime="openvino", precision="fp32", reason="test: the search chose OpenVINO",
                           timings=result.runtime_choice.timings if result.runtime_choice else [])
    card = export_nodule_trial(folder, result.model_copy(update={"runtime_choice": chosen}), task, dataset,
                               tmp_path / "ov")
    assert json.loads((tmp_path / "ov" / "shipped.json").read_text()) == {
        "file": "model.xml", "runtime": "openvino", "precision": "fp32"}
    assert {"classify/model.xml", "classify/model.bin"} <= set(card["files"])
    assert card["shipped"]["runtime"] == "openvino" and card["shipped"]["max_abs_diff"] < 1e-3
    assert "classify/model.xml on openvino fp32" in (tmp_path / "ov" / "model_card.md").read_text()
    export_nodule_trial(folder, result.model_copy(update={"runtime_choice": None}), task, dataset, tmp_path / "ort")

    found = {}
    for name in ("ov", "ort"):
        done = run_nas("detect", "--model", str(tmp_path / name), str(SCANS / "LIDC-IDRI-0003"), "--json", cwd=REPO)
        assert done.returncode == 0, done.stderr
        found[name] = {tuple(c["world_mm"]): c["score"] for c in json.loads(done.stdout)["candidates"]}
        assert f"second stage: classify/model.{'xml' if name == 'ov' else 'onnx'} on " \
               f"{'openvino' if name == 'ov' else 'onnxruntime'}" in done.stderr
    assert found["ov"].keys() == found["ort"].keys()  # the same screener passes the same candidates on
    assert found["ov"] == pytest.approx(found["ort"], abs=1e-3)


def test_detect_with_truth_prints_ranks(study, tmp_path):
    results, doc = study
    done = run_nas("detect", "--model", str(results / "nodule-tiny" / "trials" / str(doc["knee_trial"])),
                   str(SCANS / "LIDC-IDRI-0003"), "--truth", str(ANNOTATIONS), cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "reference: 3 nodule(s) of this series" in done.stderr
    summary = next(line for line in done.stdout.splitlines() if line.startswith("reference ("))
    assert "of 3 nodule(s) found" in summary
    assert sum("nodule 1 at (72.3, 76.9, -190.5) mm" in line for line in done.stdout.splitlines()) == 1


def test_detect_on_a_folder_without_a_scan_fails_clearly(study, tmp_path):
    results, doc = study
    done = run_nas("detect", "--model", str(results / "nodule-tiny" / "trials" / str(doc["knee_trial"])),
                   str(tmp_path), cwd=REPO)
    assert done.returncode == 2 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]  # after the model's own figures (a weak-model warning here)
    assert last.startswith("error:") and "no DICOM files" in last
