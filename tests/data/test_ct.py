"""CT geometry and processing on the real LIDC scans: coordinates, windowing, resampling and the lung mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import SHARED

from nas.data.ct import CTScan, lung_bbox, lung_mask, resample_isotropic, window
from nas.data.dicom import read_dicom_series
from nas.data.lidc import reference_nodules
from nas.data.luna16 import read_annotations
from nas.errors import DataError

LIDC = SHARED / "data" / "lidc"
ANNOTATIONS = SHARED / "data" / "luna16" / "annotations.csv"
pytestmark = pytest.mark.skipif(not LIDC.is_dir(), reason=f"shared LIDC scans not found at {LIDC}")


@pytest.fixture(scope="module")
def scan() -> CTScan:
    return read_dicom_series(LIDC / "LIDC-IDRI-0003")


@pytest.fixture(scope="module")
def masks(scan) -> dict[str, tuple[CTScan, np.ndarray]]:
    other = read_dicom_series(LIDC / "LIDC-IDRI-0002")
    return {"LIDC-IDRI-0003": (scan, lung_mask(scan)), "LIDC-IDRI-0002": (other, lung_mask(other))}


def _sphere(scan: CTScan, world, radius_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """The box around a world point and which of its voxels lie within `radius_mm` of it."""
    centre = scan.world_to_voxel(np.asarray(world, dtype=np.float64)[None])[0][::-1]  # (k, j, i)
    reach = np.ceil(radius_mm / np.asarray(scan.spacing)).astype(int)
    low = np.maximum(np.floor(centre).astype(int) - reach, 0)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, np.floor(centre).astype(int) + reach + 2))
    k, j, i = np.indices(scan.hu[box].shape) + low[:, None, None, None]
    dz, dy, dx = scan.spacing
    inside = ((k - centre[0]) * dz) ** 2 + ((j - centre[1]) * dy) ** 2 + ((i - centre[2]) * dx) ** 2 <= radius_mm ** 2
    return box, inside


def _sphere_mean(scan: CTScan, world, radius_mm: float) -> float:
    """Mean HU of the voxels within `radius_mm` of a world point."""
    box, inside = _sphere(scan, world, radius_mm)
    return float(scan.hu[box][inside].mean())


def test_world_and_voxel_round_trip(scan):
    rng = np.random.default_rng(0)
    ijk = rng.uniform(0, 1, (100, 3)) * np.array(scan.shape[::-1])
    np.testing.assert_allclose(scan.world_to_voxel(scan.voxel_to_world(ijk)), ijk, atol=1e-9)
    np.testing.assert_allclose(scan.voxel_to_world([[0, 0, 0]])[0], scan.origin)
    # One step along i (a column) moves x by the column spacing; along k, z by the slice spacing.
    step = scan.voxel_to_world([[1, 0, 0], [0, 1, 0], [0, 0, 1]]) - np.asarray(scan.origin)
    np.testing.assert_allclose(step, np.diag(scan.spacing[::-1]), atol=1e-9)


def test_round_trip_with_a_rotated_direction(scan):
    """A patient frame that is not the array's (here the same scan turned 30 degrees about z) still round-trips."""
    turn = np.radians(30)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]])
    turned = dataclasses.replace(scan, direction=rotation @ scan.direction)
    ijk = np.array([[10.0, 20.0, 3.0], [300.5, 17.25, 99.0]])
    world = turned.voxel_to_world(ijk)
    np.testing.assert_allclose(turned.world_to_voxel(world), ijk, atol=1e-9)
    # Distances in mm do not depend on the frame.
    assert np.linalg.norm(world[1] - world[0]) == pytest.approx(np.linalg.norm(
        scan.voxel_to_world(ijk)[1] - scan.voxel_to_world(ijk)[0]))


def test_luna16_nodules_land_on_nodule_like_voxels(scan):
    """LUNA16's world coordinates are this frame: each of the 3 nodules is soft tissue, not lung air."""
    for finding in read_annotations(ANNOTATIONS, scan.series_uid):
        assert scan.contains(scan.world_to_voxel([finding.world_mm]))[0]
        assert _sphere_mean(scan, finding.world_mm, 2.0) > -600


def test_window_maps_the_range_to_unit_interval(scan):
    hu = np.array([-2000, -1350, -600, 150, 3000], dtype=np.int16)
    out = window(hu)  # lung window: level -600, width 1500
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(window(hu, level=40, width=400), [0, 0, 0, 0.775, 1], atol=1e-6)
    image = window(scan.hu[70])
    assert image.min() >= 0 and image.max() <= 1
    with pytest.raises(ValueError, match="width must be positive"):
        window(hu, width=0)


def test_isotropic_resampling_keeps_world_positions(scan):
    iso = resample_isotropic(scan, 1.0)
    assert iso.spacing == (1.0, 1.0, 1.0)
    assert iso.origin == scan.origin and iso.sop_uids == ()
    extent = (np.array(scan.shape) - 1) * np.array(scan.spacing)
    assert np.all((np.array(iso.shape) - 1) <= extent) and np.all(np.array(iso.shape) > extent)
    for finding in read_annotations(ANNOTATIONS, scan.series_uid):
        before, after = _sphere_mean(scan, finding.world_mm, 3.0), _sphere_mean(iso, finding.world_mm, 3.0)
        assert after > -600 and abs(after - before) < 100  # a 3 mm sphere takes other voxels on each grid
    # A voxel centre present in both grids holds (nearly) the same value.
    np.testing.assert_allclose(iso.voxel_to_world([[0, 0, 5]]), scan.voxel_to_world([[0, 0, 2]]))
    assert abs(int(iso.hu[5, 200, 200]) - float(np.mean(scan.hu[2, 243:245, 243:245]))) < 150


@pytest.mark.parametrize("name", ["LIDC-IDRI-0002", "LIDC-IDRI-0003"])
def test_lung_mask_is_lung_sized_and_holds_the_nodules(masks, name):
    scan, mask = masks[name]
    assert mask.shape == scan.shape and mask.dtype == bool
    litres = mask.sum() * np.prod(scan.spacing) / 1e6
    assert 2.0 < litres < 9.0
    parenchyma = float(np.median(scan.hu[mask]))
    assert parenchyma < -700
    # Each lung lies on its own side of the body's midline: the mask reaches both halves.
    box = lung_bbox(mask)
    assert mask[box].sum() == mask.sum()
    columns = np.flatnonzero(mask.any(axis=(0, 1)))
    assert columns.min() < 200 and columns.max() > 312
    # The reference nodules (3+ readers), and LIDC-IDRI-0002's ground-glass nodule that only 2 readers marked.
    nodules = reference_nodules(next((LIDC / name).rglob("*.xml")), scan, min_readers=2)
    assert nodules
    for nodule in nodules:
        near, inside = _sphere(scan, nodule.world_mm, 5.0)  # in the mask, or juxtapleural within 5 mm of it
        assert mask[near][inside].any(), f"nodule at {nodule.world_mm} is over 5 mm from the lung mask"
        solid = -600 if nodule.readers >= 3 else parenchyma + 150
        assert _sphere_mean(scan, nodule.world_mm, 2.0) > solid


def test_lung_mask_of_a_bare_array_needs_the_spacing(scan):
    with pytest.raises(ValueError, match="spacing"):
        lung_mask(scan.hu[60:64])


@pytest.mark.parametrize("edit", ["all air", "all tissue"])
def test_no_lung_is_a_data_error_naming_the_series(scan, edit):
    slab = scan.hu[60:70]
    hu = np.full_like(slab, -1000) if edit == "all air" else np.where(slab < -400, 40, slab).astype(np.int16)
    edited = dataclasses.replace(scan, hu=hu, sop_uids=scan.sop_uids[60:70])
    with pytest.raises(DataError, match=f"no lung found in {scan.series_uid}: no air"):
        lung_mask(edited)


def test_lung_bbox_of_an_empty_mask():
    with pytest.raises(DataError, match="no lung found"):
        lung_bbox(np.zeros((3, 4, 5), dtype=bool))
