"""LUNA16 files: the annotation CSVs, and .mhd scans written from a real DICOM series and read back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED

from nas.data.ct import CTScan
from nas.data.dicom import read_dicom_series
from nas.data.luna16 import Annotation, read_annotations, read_mhd
from nas.errors import DataError

LIDC = SHARED / "data" / "lidc"
LUNA16 = SHARED / "data" / "luna16"
SERIES_0003 = "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264"
SERIES_0002 = "1.3.6.1.4.1.14519.5.2.1.6279.6001.619372068417051974713149104919"
pytestmark = pytest.mark.skipif(not LUNA16.is_dir(), reason=f"shared LUNA16 files not found at {LUNA16}")


@pytest.fixture(scope="module")
def scan() -> CTScan:
    if not LIDC.is_dir():
        pytest.skip(f"shared LIDC scans not found at {LIDC}")
    return read_dicom_series(LIDC / "LIDC-IDRI-0003")


def _write_mhd(scan: CTScan, path) -> None:
    image = sitk.GetImageFromArray(scan.hu)
    image.SetSpacing(scan.spacing[::-1])
    image.SetOrigin(scan.origin)
    image.SetDirection(tuple(np.asarray(scan.direction).ravel()))
    sitk.WriteImage(image, str(path))


def test_annotations_of_the_readme_table():
    found = read_annotations(LUNA16 / "annotations.csv", SERIES_0003)
    assert [(round(a.world_mm[0], 1), round(a.world_mm[1], 1), round(a.world_mm[2], 1), round(a.diameter_mm, 1))
            for a in found] == [(72.3, 76.9, -190.5, 21.5), (23.5, -47.6, -172.3, 8.8), (-47.4, -30.2, -169.6, 12.8)]
    assert read_annotations(LUNA16 / "annotations.csv", SERIES_0002) == []
    assert len(read_annotations(LUNA16 / "annotations.csv")) == 1186


def test_excluded_findings_and_unknown_diameters():
    assert len(read_annotations(LUNA16 / "annotations_excluded.csv", SERIES_0002)) == 53
    excluded = read_annotations(LUNA16 / "annotations_excluded.csv", SERIES_0003)
    assert len(excluded) == 48
    assert any(a.diameter_mm is None for a in excluded)  # -1 in the file: no outline, size unknown
    assert all(a.diameter_mm is None or a.diameter_mm > 0 for a in excluded)


def test_a_csv_without_the_columns_names_them(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("seriesuid,x,y,z,d\n" + (LUNA16 / "annotations.csv").read_text().splitlines()[1] + "\n")
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) coordX, coordY, coordZ, diameter_mm"):
        read_annotations(bad, SERIES_0003)


def test_mhd_round_trip_keeps_voxels_and_coordinates(tmp_path, scan):
    path = tmp_path / f"{scan.series_uid}.mhd"
    _write_mhd(scan, path)
    back = read_mhd(path)
    assert back.series_uid == SERIES_0003 and back.sop_uids == ()
    np.testing.assert_array_equal(back.hu, scan.hu)
    np.testing.assert_allclose(back.spacing, scan.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, scan.origin, atol=1e-6)
    np.testing.assert_allclose(back.direction, scan.direction, atol=1e-9)
    nodules = np.array([a.world_mm for a in read_annotations(LUNA16 / "annotations.csv", SERIES_0003)])
    np.testing.assert_allclose(back.world_to_voxel(nodules), scan.world_to_voxel(nodules), atol=1e-6)


def test_mhd_direction_is_honoured(tmp_path, scan):
    """The same patient stored with its columns reversed (x axis pointing left): world points find the same HU."""
    last_column = scan.voxel_to_world([[scan.shape[2] - 1, 0, 0]])[0]
    flipped = dataclasses.replace(scan, hu=np.ascontiguousarray(scan.hu[:, :, ::-1]),
                                  origin=tuple(float(v) for v in last_column),
                                  direction=scan.direction @ np.diag([-1.0, 1.0, 1.0]))
    path = tmp_path / "flipped.mhd"
    _write_mhd(flipped, path)
    back = read_mhd(path)
    np.testing.assert_allclose(back.direction, np.diag([-1.0, 1.0, 1.0]), atol=1e-9)
    for finding in read_annotations(LUNA16 / "annotations.csv", SERIES_0003):
        i, j, k = np.rint(back.world_to_voxel([finding.world_mm])[0]).astype(int)
        i0, j0, k0 = np.rint(scan.world_to_voxel([finding.world_mm])[0]).astype(int)
        assert i == scan.shape[2] - 1 - i0 and (j, k) == (j0, k0)
        assert back.hu[k, j, i] == scan.hu[k0, j0, i0]


def test_mhd_errors_name_the_file(tmp_path, scan):
    with pytest.raises(DataError, match="no such file"):
        read_mhd(tmp_path / "absent.mhd")
    path = tmp_path / "orphan.mhd"
    _write_mhd(dataclasses.replace(scan, hu=scan.hu[:3]), path)
    (tmp_path / "orphan.raw").unlink()
    with pytest.raises(DataError, match=r"orphan\.mhd: cannot be read as a MetaImage"):
        read_mhd(path)


def test_annotation_is_plain_data():
    a = Annotation(SERIES_0003, (1.0, 2.0, 3.0), None)
    assert dataclasses.asdict(a) == {"series_uid": SERIES_0003, "world_mm": (1.0, 2.0, 3.0), "diameter_mm": None}
