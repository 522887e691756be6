"""Both nodule stages' LIDC material: negatives clear of every outline, the patient split, the FROC estimate."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from nas.tasks.nodule.froc import estimated_froc
from nas.tasks.nodule.material import (
    CROP_PIXEL_MM,
    FALSE_POSITIVE_MM,
    SHIFT,
    SLAB_COPIES,
    SLICES_FILE,
    VOIS_DIR,
    VOTE_RULE,
    _cut,
    crop_positions,
    find_material,
)
from nas.tasks.nodule.volume import SLAB_OFFSETS, thin

DATA = SHARED / "data"
pytestmark = pytest.mark.skipif(not (DATA / SLICES_FILE).is_file() or not (DATA / VOIS_DIR).is_dir(),
                                reason=f"needs {SLICES_FILE} and {VOIS_DIR}/ in {DATA}")


@pytest.fixture(scope="module")
def material():
    found = find_material(DATA / "lidc")
    assert found is not None
    return found


def test_negative_tiles_hold_no_outlined_pixel_and_positives_sit_on_the_nodule(material):
    window, outlined, nodule, groups = material.crops("val")
    size = 16
    positives, negatives = crop_positions(outlined, nodule, size, 3, np.random.default_rng(0), groups)
    assert len(negatives) > 500 and len(positives) > 100
    assert len(set(groups[positives[:, 0]].tolist())) == len(positives)  # one per nodule: its widest slice
    assert not any(outlined[k, r:r + size, c:c + size].any() for k, r, c in negatives)
    # and none in the file's own pixels either: the tile's footprint at the crops' resolution has no vote at all
    crops = material._slices.split(material.assignment)["val"]
    for k, r, c in negatives:
        lo, hi = int(np.floor(r / CROP_PIXEL_MM)), int(np.ceil((r + size) / CROP_PIXEL_MM))
        left, right = int(np.floor(c / CROP_PIXEL_MM)), int(np.ceil((c + size) / CROP_PIXEL_MM))
        assert crops.votes[k, lo:hi, left:right].max() == 0
    centres = positives[:, 1:] + size // 2
    on = nodule[positives[:, 0], centres[:, 0], centres[:, 1]]
    assert on.mean() > 0.95  # the centroid of a >= 3-reader outline lies on it (a crescent's may not)
    assert all(crops.votes[k].max() >= VOTE_RULE for k in positives[:, 0])


def test_every_patient_is_in_one_split_and_0003_is_never_trained_on(material):
    assignment = material.assignment
    assert set(assignment.values()) == {"train", "val", "test"} and assignment["LIDC-IDRI-0003"] == "test"
    assert len(assignment) == len(material.patients) >= 874
    assert "LIDC-IDRI-0003" not in {v.patient for v in material.split_vois("val")}
    assert {v.patient for v in material.split_vois("val")} <= {p for p, s in assignment.items() if s == "val"}
    described = material.describe()
    assert sum(described["volumes"].values()) == 995  # every row of nodules.csv (two have no file)
    assert "LIDC-IDRI-0003" in described["test_patients"]
    assert sum(described["crops"].values()) == len(material._slices)


def test_volume_patches_centre_the_nodule_and_surroundings_miss_it(material):
    rng = np.random.default_rng(1)
    patches, labels = material.voi_patches("val", 16, rng, 1, 1)
    assert labels.tolist() == [1, 0] * (len(labels) // 2)
    centre = patches[labels == 1][:, 0, 8, 8, 8]
    around = patches[labels == 0][:, 0, 8, 8, 8]
    assert np.median(centre) > 0.5 > np.median(around)  # nodule tissue (> -300 HU) against mostly lung


def test_training_slabs_of_a_volume_are_shifted_in_depth_within_half_its_radius(material):
    vois = material.split_vois("val")
    plain = material.voi_slabs("val", 16, np.random.default_rng(0), augment=False)
    shifted = material.voi_slabs("val", 16, np.random.default_rng(0), augment=True)
    assert len(plain) == len(vois) and len(shifted) == SLAB_COPIES * len(vois)
    depths, slab = [], max(SLAB_OFFSETS)
    for n, v in enumerate(vois):
        centre = np.rint(v.centre).astype(int)
        reach = int(v.radius / 2)
        for tile in shifted[SLAB_COPIES * n: SLAB_COPIES * (n + 1)]:
            # the slab is the volume's three slices around some (dz, dy, dx) within the allowed shifts
            found = [dz for dz in range(-reach, reach + 1) for dy in range(-SHIFT, SHIFT + 1)
                     for dx in range(-SHIFT, SHIFT + 1)
                     if np.array_equal(tile, _cut(v.values, centre + [dz - slab, dy - 8, dx - 8],
                                                  (2 * slab + 1, 16, 16))[[slab + o for o in SLAB_OFFSETS]])]
            assert found, f"volume {n}: a slab that is no allowed shift of its nodule's centre"
            depths.append(found[0])
    assert sum(d != 0 for d in depths) > len(depths) / 3  # most volumes are deep enough to shift


def test_screener_false_positives_in_volumes_sit_beside_the_nodule_and_follow_the_screener(material):
    """What a screener ranks highest in a volume's box, away from its nodule, as stage 2 meets it in a scan."""
    def brightest(tiles):  # a "screener" that prefers dense tiles
        return tiles.mean(axis=(1, 2, 3))

    def darkest(tiles):
        return -tiles.mean(axis=(1, 2, 3))

    bright = material.false_positive_sites("val", brightest, 16, 2)
    dark = material.false_positive_sites("val", darkest, 16, 2)
    assert all(len(sites) <= 2 for _, sites in bright) and sum(len(sites) for _, sites in bright) > 100
    for v, sites in bright + dark:
        assert (np.linalg.norm(sites - v.centre, axis=1) >= v.radius + FALSE_POSITIVE_MM).all()
    density = lambda found: np.mean([v.values[tuple(np.rint(c).astype(int).clip(0, np.array(v.values.shape) - 1))]
                                     for v, sites in found for c in sites])
    assert density(bright) > density(dark)  # the screener decides which places come back
    patches = material.false_positive_patches("val", brightest, 16, 16, 2)
    assert patches.shape == (sum(len(sites) for _, sites in bright), 1, 16, 16, 16)


def test_thin_keeps_the_centre_and_mirrors_the_rest():
    patch = np.arange(16, dtype=np.float32)[:, None, None] * np.ones((16, 4, 4), np.float32)
    assert thin(patch, 16) is patch
    thinned = thin(patch, 5)
    assert thinned.shape == patch.shape
    # the centre's 5 slices (6..10) kept in place, mirrored outwards beyond them
    assert thinned[:, 0, 0].astype(int).tolist() == [10, 10, 9, 8, 7, 6, 6, 7, 8, 9, 10, 10, 9, 8, 7, 6]


def test_the_froc_estimate_on_a_hand_worked_case():
    # Four validation nodules: stage 1 hands on #1 and #3 in every scan, #2 in half, #4 never; stage-2 scores
    # 0.9, 0.8, 0.3, 0.95. A sample of four false positives (0.85, 0.5, 0.2, 0.1), of which a scan holds 2.
    result = estimated_froc(np.array([1.0, 0.5, 1.0, 0.0]), np.array([0.9, 0.8, 0.3, 0.95]),
                            [0.85, 0.5, 0.2, 0.1], per_scan=2)
    # each sampled false positive stands for 2/4 = 0.5 per scan. Threshold 0.9: 0 FP/scan, found #1 -> 1/4;
    # 0.8: 0.5 FP/scan (0.85), #1 + half of #2 -> 1.5/4; 0.3: 1 FP/scan (0.85, 0.5), #1 + #2/2 + #3 -> 2.5/4;
    # 0.2: 1.5 FP/scan, no more found (#4 never reaches stage 2).
    assert result.sensitivity_at_fp == {"0.125": 0.25, "0.25": 0.25, "0.5": 0.375, "1": 0.625, "2": 0.625,
                                        "4": 0.625, "8": 0.625}
    assert result.cpm == pytest.approx((0.25 + 0.25 + 0.375 + 4 * 0.625) / 7)
    # twice the false positives per scan: 0.5 FP/scan is first reached at 0.85's threshold (0.9 -> #1 only)
    doubled = estimated_froc(np.array([1.0, 0.5, 1.0, 0.0]), np.array([0.9, 0.8, 0.3, 0.95]),
                             [0.85, 0.5, 0.2, 0.1], per_scan=4)
    assert doubled.sensitivity_at_fp["0.5"] == 0.25 and doubled.sensitivity_at_fp["1"] == 0.375
    with pytest.raises(ValueError):
        estimated_froc(np.zeros(0), np.zeros(0), [0.1], per_scan=1)
