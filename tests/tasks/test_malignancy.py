"""The nodule-malignancy task end to end on a small slice of lidc_vois: a search over the 3D families with
compression and measured latency, a schema-valid front, an export, and `nas predict` on a NIfTI volume."""

from __future__ import annotations

import json

import jsonschema
import pytest
from _vois import VOIS, small_vois
from conftest import FIXTURES, QUICK_PROFILE, REPO, run_nas, schema

from nas.data.lidc_vois import patient_split, read_nodule_table
from nas.search.final import finalize
from nas.search.runner import SearchConfig, prepare, run_search

pytestmark = pytest.mark.skipif(not VOIS.is_dir(), reason=f"needs the shared nodule volumes in {VOIS}")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    data = small_vois(tmp_path_factory.mktemp("vois"))
    results = tmp_path_factory.mktemp("results")
    config = SearchConfig(task="nodule-malignancy", hardware=str(QUICK_PROFILE),
                          space=str(FIXTURES / "nodule-malignancy-tiny.yaml"), study="malignancy", results=results,
                          trials=2, epochs=1, baselines=False, progress=False, data=str(data), sampler="random")
    run = prepare(config)
    run_search(config, run)
    return run, finalize(run, log=lambda _: None), results


@pytest.mark.slow
def test_a_search_writes_a_schema_valid_front_of_3d_classifiers(study):
    run, doc, _ = study
    jsonschema.validate(doc, schema("pareto.v1.schema.json"))
    assert doc["task"] == "nodule-malignancy" and doc["members"]
    assert [o["name"] for o in doc["objectives"]] == ["auc", "latency_p95"]
    for member in doc["members"]:
        assert member["spec"]["family"] in ("dsconv3d", "resnet3d") and member["spec"]["spatial_dims"] == 3
        assert member["latency"]["method"] == "measured" and member["latency"]["p50_ms"] > 0
        assert member["latency"]["precision"] == member["spec"]["compression"]["quant"]
        assert set(member["metrics"]["test"]) >= {"auc", "sensitivity", "specificity", "threshold"}
    split = patient_split([r.patient_id for r in read_nodule_table(run.context.dataset.path)])
    assert split["LIDC-IDRI-0003"] == "test"  # settled point 22
    assert doc["data"]["classes"] == ["benign", "malignant"] and doc["data"]["positive_class"] == "malignant"


@pytest.mark.slow
def test_export_and_predict_on_a_nifti_volume(study, tmp_path):
    _, doc, results = study
    trial = doc["knee_trial"]
    done = run_nas("export", "--study", "malignancy", "--trial", str(trial), "--out", str(tmp_path / "model"),
                   "--results", str(results), "--json", cwd=REPO)
    assert done.returncode == 0, done.stderr
    io = json.loads((tmp_path / "model" / "io.json").read_text())
    assert io["task"] == "nodule-malignancy" and io["input_shape"] == ["batch", 1, 16, 16, 16]
    assert io["layout"] == "NCDHW" and "HU" in io["normalise"]
    volume = VOIS / "image" / "LIDC-IDRI-0003_R_2.nii.gz"
    done = run_nas("predict", "--model", str(tmp_path / "model"), str(volume), "--json", cwd=REPO)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["predictions"]
    assert row["error"] is None and 0 <= row["score"] <= 1 and row["decision"] in (0, 1)
