"""lidc_slices_64: the crops as the README counts them, the patient split, the measured HU window, the errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from nas.data.dicom import read_dicom_series
from nas.data.lidc_slices import CONTEXT, HU_HIGH, HU_LOW, HU_RMS_ERROR, read_slices, to_grey, to_hu
from nas.data.lidc_vois import patient_split
from nas.errors import DataError

SLICES = SHARED / "data" / "lidc_slices_64.npz"
LIDC = SHARED / "data" / "lidc"
pytestmark = pytest.mark.skipif(not SLICES.is_file(), reason=f"shared lidc_slices_64.npz not found at {SLICES}")

ANCHORS = {("LIDC-IDRI-0002", 0): (171, 331, 313), ("LIDC-IDRI-0003", 0): (62, 314, 336),
           ("LIDC-IDRI-0003", 1): (70, 317, 333), ("LIDC-IDRI-0003", 2): (81, 165, 275),
           ("LIDC-IDRI-0003", 3): (81, 187, 189)}
"""(patient, nodule_idx) -> (slice, row, column) in the full scan of the top-left pixel of the nodule's crop with
slice_idx 0; its crop with slice_idx s lies s slices further. Found by benchmarks/lidc_slices_window.py (normalised
cross-correlation over every slice and offset), cached here so the test reads the scans and no more."""


@pytest.fixture(scope="module")
def slices():
    return read_slices(SLICES)


def test_the_crops_of_the_readme(slices):
    assert len(slices) == 15539 and slices.images.shape[1:] == (64, 64)
    assert len(slices.patients) == 874
    assert [int((slices.patient_id == p).sum()) for p in ("LIDC-IDRI-0002", "LIDC-IDRI-0003")] == [28, 30]
    greatest = slices.votes.max(axis=(1, 2))
    assert np.bincount(greatest, minlength=5).tolist() == [106, 4919, 3027, 2816, 4671]


def test_the_split_is_by_patient_and_keeps_0003_for_test(slices):
    assignment = patient_split(slices.patients, exclude=["LIDC-IDRI-0002"])
    parts = slices.split(assignment)
    assert sorted(parts) == ["test", "train", "val"]
    seen = [set(part.patients) for part in parts.values()]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
    assert "LIDC-IDRI-0003" in seen[list(parts).index("test")]
    assert sum(len(p) for p in parts.values()) == len(slices) - 28  # LIDC-IDRI-0002 left out
    test = parts["test"].subset(["LIDC-IDRI-0003"])
    rows = slices.patient_id == "LIDC-IDRI-0003"
    assert np.array_equal(test.images, slices.images[rows]) and np.array_equal(test.votes, slices.votes[rows])


def test_the_grey_levels_map_back_to_the_full_scans_hounsfield_units(slices):
    if not LIDC.is_dir():
        pytest.skip(f"shared LIDC scans not found at {LIDC}")
    greys, hus, contexts = [], [], []
    for patient in ("LIDC-IDRI-0002", "LIDC-IDRI-0003"):
        scan = read_dicom_series(LIDC / patient).hu
        for index in np.flatnonzero(slices.patient_id == patient):
            k, r, c = ANCHORS[patient, int(slices.nodule_idx[index])]
            k += int(slices.slice_idx[index])
            edge = (CONTEXT - 64) // 2
            contexts.append(scan[k, r - edge:r - edge + CONTEXT, c - edge:c - edge + CONTEXT])
            hus.append(contexts[-1][edge:edge + 64, edge:edge + 64].astype(np.float64))
            greys.append(slices.images[index])
    greys, hus, contexts = np.stack(greys), np.stack(hus), np.stack(contexts)
    assert len(greys) == 58
    # The rule the crops were made by: min-max over each crop's 128x128 context, to within 1 grey level.
    assert np.abs(to_grey(contexts).astype(int) - greys).max() <= 1
    assert np.mean(to_grey(contexts) == greys) > 0.99
    # Given each crop's own context range, to_hu is exact to half a grey level (plus float rounding).
    low, high = contexts.min(axis=(1, 2))[:, None, None], contexts.max(axis=(1, 2))[:, None, None]
    assert np.all(np.abs(to_hu(greys, low, high) - hus) <= (high - low) / 255 * 0.5 + 1)
    # One window fitted again over the unclipped pixels recovers the shipped constants, and its error is as stated.
    keep = (greys > 0) & (greys < 255)
    slope, intercept = np.polyfit(greys[keep].astype(np.float64), hus[keep], 1)
    assert intercept == pytest.approx(HU_LOW, abs=1.0) and intercept + 255 * slope == pytest.approx(HU_HIGH, abs=1.0)
    error = to_hu(greys) - hus
    assert np.sqrt(np.mean(error[keep] ** 2)) == pytest.approx(HU_RMS_ERROR, abs=1.0)
    lung = keep & (hus < -400)
    assert np.sqrt(np.mean(error[lung] ** 2)) < 40  # 31 HU measured: lung is where one window does well


def _write(path, **changes):
    arrays = {"images": np.zeros((2, 8, 8), np.uint8), "votes": np.zeros((2, 8, 8), np.uint8),
              "patient_id": np.array(["LIDC-IDRI-0004", "LIDC-IDRI-0005"]), "nodule_idx": np.zeros(2, np.int64),
              "slice_idx": np.arange(2)}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_errors_name_the_file_and_what_is_wrong(tmp_path):
    assert len(read_slices(_write(tmp_path / "ok.npz"))) == 2
    with pytest.raises(DataError, match="no such file"):
        read_slices(tmp_path / "nowhere.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(DataError, match=r"text\.npz: cannot be read as an \.npz"):
        read_slices(tmp_path / "text.npz")
    with pytest.raises(DataError, match="missing array.*votes"):
        read_slices(_write(tmp_path / "a.npz", votes=None))
    with pytest.raises(DataError, match=r"votes must be uint8 of the images' shape \(2, 8, 8\)"):
        read_slices(_write(tmp_path / "b.npz", votes=np.zeros((2, 4, 4), np.uint8)))
    with pytest.raises(DataError, match=r"votes go up to 5; .* 0-4"):
        read_slices(_write(tmp_path / "c.npz", votes=np.full((2, 8, 8), 5, np.uint8)))
    with pytest.raises(DataError, match="one entry per image"):
        read_slices(_write(tmp_path / "d.npz", slice_idx=np.arange(3)))
    with pytest.raises(DataError, match="images must be uint8"):
        read_slices(_write(tmp_path / "e.npz", images=np.zeros((2, 8, 8), np.float32)))
