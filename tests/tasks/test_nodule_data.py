"""The nodule task's data on the two shared LIDC scans: split by patient, geometry, derived examples, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED

from nas.data.ct import CTScan
from nas.errors import DataError
from nas.tasks.nodule.data import (
    HARD_NEGATIVE_COPIES,
    SCREENER_FALSE_POSITIVES,
    VOI_FALSE_POSITIVES,
    load_nodule_dataset,
    nodule_data,
)
from nas.tasks.nodule.volume import SLAB_OFFSETS, prepare

SCANS = SHARED / "data" / "lidc"
pytestmark = pytest.mark.skipif(not SCANS.is_dir(), reason=f"needs the shared CT scans in {SCANS}")
LUNA16_0003 = [(72.3, 76.9, -190.5), (23.5, -47.6, -172.3), (-47.4, -30.2, -169.6)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def data(results):
    dataset = load_nodule_dataset(SCANS)
    return dataset, nodule_data(dataset, results)


def test_split_by_patient_keeps_the_nodules_for_test(data):
    dataset, d = data
    patients = {split: {d.scans[i].patient for i in ix} for split, ix in d.splits.items()}
    assert patients == {"train": {"LIDC-IDRI-0002"}, "val": set(), "test": {"LIDC-IDRI-0003"}}
    assert d.estimated_val  # no scan left for validation: validation patients' LIDC nodules, estimated
    described = d.describe()
    assert described["reference_nodules"] == {"train": 0, "val": 0, "test": 3}
    assert "estimated" in described["validation"] and "is trained on" in described["note_0002"]
    assert dataset.fingerprint and dataset.positive_class == "nodule"


def test_reference_standard_and_grid_geometry(data):
    _, d = data
    test = d.splits["test"][0]
    truth = d.truth(test)
    found = np.array([n.world_mm for n in truth.nodules])
    assert np.allclose(sorted(found.tolist()), sorted(LUNA16_0003), atol=0.1)
    prepared = d.prepared(test)
    grid = prepared.from_world(found)
    assert np.allclose(prepared.to_world(grid), found, atol=1e-6)
    # the scan voxel of a nodule maps back to the same world point through the reader's geometry
    assert np.allclose(prepared.geometry.voxel_to_world(prepared.to_scan_voxel(grid)), found, atol=1e-6)
    inside = [prepared.mask[tuple(np.rint(g).astype(int))] for g in grid]
    assert all(inside), "every reference nodule lies in the (dilated) lung mask"
    assert d.prepare_ms[prepared.series_uid] and min(d.prepare_ms[prepared.series_uid]) > 0


def test_the_cache_gives_back_the_prepared_scan_with_its_seeds(data, results):
    _, d = data
    test = d.splits["test"][0]
    fresh = d.prepared(test)
    cached = nodule_data(load_nodule_dataset(SCANS), results).prepared(test)  # read from the cache folder
    assert np.array_equal(cached.seeds, fresh.seeds) and len(cached.seeds) > 100
    assert cached.seed_ms == pytest.approx(fresh.seed_ms) and 0 < cached.seed_ms < min(d.prepare_ms[fresh.series_uid])
    assert np.abs(cached.volume - fresh.volume).max() <= 0.5 / 255 + 1e-6  # stored as 8 bits


def test_examples_for_both_stages(data):
    _, d = data
    for split in ("train", "val", "test"):
        for stage, size, shape in (("screen", 16, (len(SLAB_OFFSETS), 16, 16)), ("classify", 16, (1, 16, 16, 16))):
            inputs, labels = d.inputs(split, stage, size)
            assert inputs.shape[1:] == shape and len(inputs) == len(labels)
            assert 0 < int(labels.sum()) < len(labels), (split, stage)
    train_labels = d.inputs("train", "classify", 16)[1]
    assert int(train_labels.sum()) >= 1000  # the training patients' LIDC volumes, shifted copies
    assert [t.series_uid for _, t in d.froc_scans("val")] == [d.scans[i].series_uid for i in d.splits["train"]]


def test_the_screeners_top_false_positives_are_mined_for_both_stages(data):
    """The cascade rule: the seeds a screener ranks highest on the training scan, away from every finding, come
    back as stage-2 negatives (HARD_NEGATIVE_COPIES each), then (stage 2 only) those beside the training patients'
    nodules in their volumes; which ones depends on the screener."""
    _, d = data
    def brightest(tiles):  # a "screener" that prefers dense tiles
        return tiles.mean(axis=(1, 2, 3))

    def darkest(tiles):
        return -tiles.mean(axis=(1, 2, 3))

    patches, labels = d.screener_false_positives(brightest, 16, "classify", 16)
    sites = d.material.false_positive_sites("train", brightest, 16, VOI_FALSE_POSITIVES)
    beside = sum(len(places) for _, places in sites)
    count = SCREENER_FALSE_POSITIVES * HARD_NEGATIVE_COPIES + beside
    assert beside > 100 and patches.shape == (count, 1, 16, 16, 16)
    assert int(labels.sum()) == 0 and patches.dtype == torch.float32
    other, _ = d.screener_false_positives(darkest, 16, "classify", 16)
    assert patches.mean() > other.mean()  # the dense blobs a bright-loving screener passes on, not the dark ones
    tiles, _ = d.screener_false_positives(brightest, 16, "screen", 16)  # the screener's own second pass
    assert tiles.shape == (SCREENER_FALSE_POSITIVES * HARD_NEGATIVE_COPIES, len(SLAB_OFFSETS), 16, 16)  # scan only


def test_a_scan_without_lungs_is_refused_clearly():
    solid = CTScan(hu=np.full((24, 64, 64), 40, np.int16), spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                   direction=np.eye(3), series_uid="1.2.3", sop_uids=(), source=Path("phantom"))
    with pytest.raises(DataError, match=r"phantom \(series 1\.2\.3\): no lung found"):
        prepare(solid)


def test_missing_data_folder_names_the_layout(tmp_path):
    with pytest.raises(DataError, match="no CT scans found"):
        load_nodule_dataset(tmp_path)
