"""lidc_vois: the nodule table, volumes matched voxel for voxel against a full DICOM scan, the patient split, errors."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED

from nas.data.dicom import read_dicom_series
from nas.data.lidc_vois import TEST_PATIENTS, load_volumes, patient_split, read_nodule_table
from nas.errors import ConfigError, DataError

VOIS = SHARED / "data" / "lidc_vois"
LIDC = SHARED / "data" / "lidc"
SERIES_0003 = "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264"
LUNA16_0003_R_2 = (72.3, 76.9, -190.5)
pytestmark = pytest.mark.skipif(not VOIS.is_dir(), reason=f"shared lidc_vois not found at {VOIS}")


def test_the_table_of_the_readme():
    records = read_nodule_table(VOIS)
    assert len(records) == 995
    assert sum(r.malignant for r in records) == 345
    first = records[0]
    assert (first.patient_id, first.nodule_id, first.series_uid) == ("LIDC-IDRI-0003", 2, SERIES_0003)
    assert np.allclose(first.centre_mm, LUNA16_0003_R_2, atol=0.1)
    assert first.malignant and first.characteristics["Malignancy"] == 5
    assert all(lo <= c <= hi for lo, c, hi in zip(first.bbox_low_mm, first.centre_mm, first.bbox_high_mm))


def test_a_volume_equals_the_full_scan_at_its_world_box():
    if not LIDC.is_dir():
        pytest.skip(f"shared LIDC scans not found at {LIDC}")
    volumes = {v.nodule_id: v for v in load_volumes(VOIS, patients=["LIDC-IDRI-0003"])}
    assert sorted(volumes) == [2, 3, 4]
    scan = read_dicom_series(LIDC / "LIDC-IDRI-0003")
    box = volumes[2]
    assert box.series_uid == scan.series_uid == SERIES_0003
    assert box.spacing_mm == pytest.approx(scan.spacing, abs=1e-4)
    i, j, k = np.rint(scan.world_to_voxel(np.array([box.origin_mm]))[0]).astype(int)
    z, y, x = box.image.shape
    assert np.array_equal(box.image, scan.hu[k:k + z, j:j + y, i:i + x])
    # The LUNA16 nodule lies inside the box, on its mask.
    centre = np.rint((np.array(LUNA16_0003_R_2) - box.origin_mm) / np.array(box.spacing_mm[::-1])).astype(int)
    assert box.mask[centre[2], centre[1], centre[0]]
    assert box.image.dtype == np.int16 and box.mask.dtype == bool


def test_boxes_stored_along_minus_x_and_y_are_flipped_to_run_along_plus():
    record = next(r for r in read_nodule_table(VOIS) if r.name == "LIDC-IDRI-0262_R_1")
    assert sitk.ReadImage(str(VOIS / "image" / f"{record.name}.nii.gz")).GetDirection()[0] == -1.0
    (volume,) = [v for v in load_volumes(VOIS, patients=["LIDC-IDRI-0262"]) if v.nodule_id == 1]
    z, y, x = np.nonzero(volume.mask)
    centroid = np.array(volume.origin_mm) + np.array([x.mean(), y.mean(), z.mean()]) * volume.spacing_mm[::-1]
    assert np.allclose(centroid, record.centre_mm, atol=1.5)


def test_the_patient_split_is_stable_disjoint_and_keeps_0003_for_test():
    vois = {r.patient_id for r in read_nodule_table(VOIS)}
    split = patient_split(sorted(vois))
    assert split == patient_split(sorted(vois, reverse=True))
    # A patient's split depends on its id alone, so a second set's split agrees on the patients they share.
    part = sorted(vois)[::3]
    assert patient_split(part) == {p: split[p] for p in part}
    assert {split[p] for p in TEST_PATIENTS} == {"test"}
    assert set(split.values()) == {"train", "val", "test"}
    assert 0.6 < list(split.values()).count("train") / len(split) < 0.8
    for seed in range(5):
        assert patient_split(["LIDC-IDRI-0003", "LIDC-IDRI-0004"], seed=seed)["LIDC-IDRI-0003"] == "test"
    # A sha256 of the seed and id, not Python's per-process salted hash: these stay what they were.
    fixed = patient_split(["LIDC-IDRI-0004", "LIDC-IDRI-0007", "LIDC-IDRI-0010"])
    assert list(fixed.values()) == ["train", "val", "test"]
    assert "LIDC-IDRI-0002" not in patient_split(["LIDC-IDRI-0002", "LIDC-IDRI-0003"], exclude=["LIDC-IDRI-0002"])
    with pytest.raises(ConfigError, match="summing to 1"):
        patient_split(["LIDC-IDRI-0004"], fractions=(0.8, 0.15, 0.15))


def _copy(tmp_path: Path, names: list[str]) -> Path:
    """A small lidc_vois folder holding only `names`' rows and files."""
    root = tmp_path / "vois"
    for folder in ("image", "nodule_mask"):
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(VOIS / folder / f"{name}.nii.gz", root / folder)
    with (VOIS / "nodules.csv").open(newline="") as src, (root / "nodules.csv").open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, reader.fieldnames)
        writer.writeheader()
        writer.writerows(r for r in reader if f"{r['patient_id']}_R_{r['nodule_id']}" in names)
    return root


def test_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_volumes(tmp_path / "nowhere")
    root = _copy(tmp_path, ["LIDC-IDRI-0003_R_3", "LIDC-IDRI-0003_R_4"])
    assert [v.nodule_id for v in load_volumes(root)] == [3, 4]
    with pytest.raises(DataError, match="no volume for patient.*LIDC-IDRI-0999"):
        load_volumes(root, patients=["LIDC-IDRI-0999"])

    (root / "nodule_mask" / "LIDC-IDRI-0003_R_4.nii.gz").unlink()
    with pytest.raises(DataError, match=r"LIDC-IDRI-0003_R_4\.nii\.gz: has no mask"):
        load_volumes(root)

    small = sitk.GetImageFromArray(np.zeros((2, 3, 4), dtype=np.int16))
    sitk.WriteImage(small, str(root / "nodule_mask" / "LIDC-IDRI-0003_R_4.nii.gz"))
    with pytest.raises(DataError, match=r"mask shape \(z, y, x\) \(2, 3, 4\) differs"):
        load_volumes(root)

    shutil.copy(VOIS / "image" / "LIDC-IDRI-0004_R_1.nii.gz", root / "image")
    with pytest.raises(DataError, match="no row in nodules.csv.*LIDC-IDRI-0004_R_1"):
        load_volumes(root)

    table = root / "nodules.csv"
    table.write_text(table.read_text().replace("Diagnosis,", "Diag,", 1))
    with pytest.raises(DataError, match="missing column.*Diagnosis"):
        read_nodule_table(root)
    table.unlink()
    with pytest.raises(DataError, match=r"nodules\.csv: no such file"):
        read_nodule_table(root)
