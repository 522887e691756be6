"""Candidate generation on a real scan: seeds reach every reference nodule, and selection keeps what stage 1 ranks
first, moved onto the blob it sits on."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from nas.data.lidc import reference_nodules
from nas.tasks.nodule.data import read_scan
from nas.tasks.nodule.pipeline import DENSE_STRIDES, dense_windows, select_candidates
from nas.tasks.nodule.volume import SEED_CAP, Prepared, prepare, recentre

SCAN = SHARED / "data" / "lidc" / "LIDC-IDRI-0003"
pytestmark = pytest.mark.skipif(not SCAN.is_dir(), reason=f"needs the shared CT scan {SCAN}")


@pytest.fixture(scope="module")
def scan() -> tuple[Prepared, np.ndarray, np.ndarray]:
    """The prepared scan and its reference nodules (LIDC XML, >= 3 readers, >= 3 mm): grid positions and radii."""
    folder = next(p.parent for p in SCAN.rglob("*.dcm"))
    ct = read_scan(folder)
    prepared = prepare(ct)
    nodules = reference_nodules(folder, ct)
    assert len(nodules) == 3
    centres = prepared.from_world(np.array([n.world_mm for n in nodules]))
    return prepared, centres, np.array([n.diameter_mm / 2 for n in nodules])


def _hits(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per reference nodule, whether some point lies within its radius (LUNA16's hit rule, 1 mm grid)."""
    distance = np.linalg.norm(centres[:, None] - np.asarray(points)[None], axis=2)
    return (distance <= radii[:, None]).any(axis=1)


def test_seeds_reach_every_reference_nodule(scan):
    prepared, centres, radii = scan
    seeds = prepared.seeds
    assert 0 < len(seeds) <= SEED_CAP
    assert prepared.mask[tuple(np.rint(seeds).astype(int).T)].all(), "seeds lie inside the lung mask"
    assert _hits(seeds, centres, radii).all()
    assert _hits(recentre(prepared, seeds), centres, radii).all()  # moving onto blobs keeps every nodule


def test_selection_keeps_the_best_ranked_seeds_on_their_blobs(scan):
    # A first stage that ranks the seeds nearest each nodule first (a suspicion map peaking at known points) must
    # hand exactly those on, each within its nodule's radius after moving; the rest stay under the cap.
    prepared, centres, radii = scan
    seeds = prepared.seeds
    nearest = np.argmin(np.linalg.norm(seeds[None] - centres[:, None], axis=2), axis=1)
    scores = np.random.default_rng(0).uniform(0.0, 0.4, len(seeds))
    scores[nearest] = [0.99, 0.98, 0.97]
    chosen, kept = select_candidates(prepared, seeds, scores, threshold=0.5, limit=8)
    assert kept.tolist() == pytest.approx([0.99, 0.98, 0.97])
    for c, r, point in zip(centres, radii, chosen):
        assert np.linalg.norm(point - c) <= r
    chosen, kept = select_candidates(prepared, seeds, scores, threshold=0.0, limit=8)
    assert len(chosen) == 8 and list(kept) == sorted(kept, reverse=True)
    assert _hits(chosen, centres, radii).all()
    gaps = np.linalg.norm(chosen[:, None] - chosen[None], axis=2)[np.triu_indices(len(chosen), 1)]
    assert gaps.min() > 4.0  # duplicates merged (MERGE_MM)


def test_dense_windows_step_finer_over_the_same_lungs(scan):
    # Each finer stride of the dense baseline runs about 8x the windows, and at every stride some window is
    # centred within half a step of each nodule on every axis.
    prepared, centres, _ = scan
    size = 32
    windows = {size // f: dense_windows(prepared, size, size // f) for f in DENSE_STRIDES}
    counts = [len(windows[size // f]) for f in DENSE_STRIDES]
    assert all(6 < fine / coarse < 10 for coarse, fine in zip(counts, counts[1:]))
    for stride, points in windows.items():
        assert prepared.mask[tuple(points.T)].mean() > 0.3  # mostly on lung
        offset = np.abs(centres[:, None] - points[None]).max(axis=2).min(axis=1)
        assert (offset <= stride / 2).all(), (stride, offset)
