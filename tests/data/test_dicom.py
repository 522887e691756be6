"""The DICOM series reader on the two real LIDC scans, and its refusals on edited copies of their slices."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pydicom
import pytest
from conftest import SHARED

from nas.data.ct import CTScan
from nas.data.dicom import read_dicom_series
from nas.errors import DataError

LIDC = SHARED / "data" / "lidc"
# The README's table: slices, pixel spacing, slice spacing, series UID suffix.
EXPECTED = {
    "LIDC-IDRI-0002": (261, 0.681641, 1.25, "619372068417051974713149104919"),
    "LIDC-IDRI-0003": (140, 0.820312, 2.5, "170706757615202213033480003264"),
}
pytestmark = pytest.mark.skipif(not LIDC.is_dir(), reason=f"shared LIDC scans not found at {LIDC}")


@pytest.fixture(scope="module")
def scans() -> dict[str, CTScan]:
    return {name: read_dicom_series(LIDC / name) for name in EXPECTED}


@pytest.fixture(scope="module")
def slices_by_z() -> list:
    """LIDC-IDRI-0003's slice files in z order (their names are not in z order)."""
    files = sorted((LIDC / "LIDC-IDRI-0003").rglob("*.dcm"))
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    return [files[i] for i in np.argsort(z)]


@pytest.mark.parametrize("name", EXPECTED)
def test_real_scans_have_the_readme_geometry(scans, name):
    slices, pixel, step, uid_suffix = EXPECTED[name]
    scan = scans[name]
    assert scan.hu.dtype == np.int16
    assert scan.shape == (slices, 512, 512)
    assert scan.spacing == pytest.approx((step, pixel, pixel), abs=1e-4)
    assert scan.series_uid.endswith(uid_suffix)
    assert len(scan.sop_uids) == slices and len(set(scan.sop_uids)) == slices
    np.testing.assert_allclose(scan.direction, np.eye(3), atol=1e-6)  # axial, patient frame aligned


@pytest.mark.parametrize("name", EXPECTED)
def test_slices_are_sorted_along_the_normal_and_placed_by_their_own_headers(scans, name):
    scan = scans[name]
    by_uid = {}
    for path in sorted((LIDC / name).rglob("*.dcm"))[::40]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_uid[ds.SOPInstanceUID] = [float(v) for v in ds.ImagePositionPatient]
    for uid, position in by_uid.items():
        k = scan.sop_uids.index(uid)
        np.testing.assert_allclose(scan.voxel_to_world([[0, 0, k]])[0], position, atol=1e-3)
    z = scan.voxel_to_world(np.column_stack([np.zeros(scan.shape[0]), np.zeros(scan.shape[0]),
                                             np.arange(scan.shape[0])]))[:, 2]
    assert np.all(np.diff(z) > 0)


@pytest.mark.parametrize("name", EXPECTED)
def test_hounsfield_units_of_air_and_soft_tissue(scans, name):
    """The commonest value below -800 HU is air (about -1000); above -50 HU, soft tissue (0 to 100)."""
    values = np.arange(-4000, 4000)
    counts = np.bincount(np.clip(scans[name].hu.ravel().astype(np.int32) + 4000, 0, 7999), minlength=8000)
    air = (values >= -1200) & (values < -800)
    tissue = (values >= -50) & (values < 300)
    assert -1030 <= values[air][np.argmax(counts[air])] <= -970
    assert 0 <= values[tissue][np.argmax(counts[tissue])] <= 100


def test_no_patient_identifying_field_is_kept(scans):
    """Only geometry, voxels and UIDs are returned (settled point 14): the field list is fixed."""
    assert {f.name for f in dataclasses.fields(CTScan)} == {
        "hu", "spacing", "origin", "direction", "series_uid", "sop_uids", "source"}
    patient_id = pydicom.dcmread(next((LIDC / "LIDC-IDRI-0003").rglob("*.dcm")), stop_before_pixels=True).PatientID
    scan = scans["LIDC-IDRI-0003"]
    assert patient_id not in scan.series_uid and all(patient_id not in uid for uid in scan.sop_uids)


# --- refusals, on folders built from a few real slices ---------------------------------------------------------

def _folder(tmp_path, files, edit=None):
    """Links to `files` in a fresh folder; `edit` maps an index to a function editing that slice's header."""
    folder = tmp_path / "series"
    folder.mkdir()
    for n, path in enumerate(files):
        target = folder / f"{n:03d}.dcm"
        if edit and n in edit:
            ds = pydicom.dcmread(path)
            edit[n](ds)
            ds.save_as(target)
        else:
            target.symlink_to(path)
    return folder


def test_a_few_real_slices_read_on_their_own(tmp_path, slices_by_z):
    scan = read_dicom_series(_folder(tmp_path, slices_by_z[60:65]))
    assert scan.shape == (5, 512, 512)
    assert scan.spacing[0] == pytest.approx(2.5)


def test_two_series_in_one_folder_are_named(tmp_path, slices_by_z):
    other = "1.2.826.0.1.3680043.8.498.1"
    folder = _folder(tmp_path, slices_by_z[60:63], {1: lambda ds: setattr(ds, "SeriesInstanceUID", other)})
    with pytest.raises(DataError, match="2 series") as err:
        read_dicom_series(folder)
    message = str(err.value)
    assert other in message and "170706757615202213033480003264" in message
    assert "001.dcm" in message and "000.dcm" in message


def test_a_missing_middle_slice_names_the_files_around_the_gap(tmp_path, slices_by_z):
    folder = _folder(tmp_path, slices_by_z[60:65])
    (folder / "002.dcm").unlink()
    with pytest.raises(DataError, match="missing slices") as err:
        read_dicom_series(folder)
    assert "001.dcm" in str(err.value) and "003.dcm" in str(err.value)


def test_a_non_ct_slice_names_the_file_and_its_modality(tmp_path, slices_by_z):
    folder = _folder(tmp_path, slices_by_z[60:63], {2: lambda ds: setattr(ds, "Modality", "MR")})
    with pytest.raises(DataError, match=r"002\.dcm: Modality is MR, not CT"):
        read_dicom_series(folder)


def test_a_different_pixel_spacing_names_the_file(tmp_path, slices_by_z):
    folder = _folder(tmp_path, slices_by_z[60:63], {1: lambda ds: setattr(ds, "PixelSpacing", [0.7, 0.7])})
    with pytest.raises(DataError, match=r"001\.dcm: PixelSpacing \[0\.7, 0\.7\] differs"):
        read_dicom_series(folder)


def test_a_different_orientation_names_the_file(tmp_path, slices_by_z):
    folder = _folder(tmp_path, slices_by_z[60:63],
                     {2: lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 1, 0, 0])})
    with pytest.raises(DataError, match=r"002\.dcm: ImageOrientationPatient .* differs"):
        read_dicom_series(folder)


def test_a_different_image_size_names_the_file(tmp_path, slices_by_z):
    folder = _folder(tmp_path, slices_by_z[60:63], {0: lambda ds: setattr(ds, "Rows", 256)})
    with pytest.raises(DataError, match=r"image size .* differs"):
        read_dicom_series(folder)


def test_a_duplicated_slice_names_both_files(tmp_path, slices_by_z):
    folder = _folder(tmp_path, [*slices_by_z[60:63], slices_by_z[61]])
    with pytest.raises(DataError, match="same slice position") as err:
        read_dicom_series(folder)
    assert "001.dcm" in str(err.value) and "003.dcm" in str(err.value)


def test_a_folder_without_dicom_files(tmp_path):
    xml = next((LIDC / "LIDC-IDRI-0003").rglob("*.xml"))
    (tmp_path / "only-xml").mkdir()
    shutil.copy(xml, tmp_path / "only-xml")
    with pytest.raises(DataError, match="no DICOM files"):
        read_dicom_series(tmp_path / "only-xml")


def test_an_unreadable_slice_names_the_file(tmp_path, slices_by_z):
    folder = _folder(tmp_path, slices_by_z[60:63])
    (folder / "001.dcm").unlink()
    (folder / "001.dcm").write_bytes(slices_by_z[61].read_bytes()[:2000])  # a truncated real slice
    with pytest.raises(DataError, match=r"001\.dcm: cannot"):
        read_dicom_series(folder)


def test_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        read_dicom_series(tmp_path / "nowhere")
