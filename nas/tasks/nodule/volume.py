"""A CT scan as the nodule pipeline sees it, and the pieces cut from it: first-stage slabs, second-stage patches.

Pre-processing (what `scan_ms` counts as `preprocess`): a lung mask on a coarse (about 4 mm) subsample of the scan,
the lungs' box cropped from the full-resolution scan and resampled to a 1 mm grid, windowed to [0, 1] over
[-1000, 400] HU, and the candidate seeds: blob-like dense spots inside the lung mask (`blob_seeds`), the places the
first stage looks at. Everything after works in that grid's voxels (z, y, x) and maps back to the scan's voxels and
world millimetres through `Prepared.to_scan_voxel` / `to_world`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from nas.data.ct import CTScan, lung_bbox, lung_mask
from nas.errors import DataError

__all__ = [
    "GRID_MM",
    "HU_HIGH",
    "HU_LOW",
    "PATCH_DEPTH_MM",
    "SEED_CAP",
    "SLAB_OFFSETS",
    "VIEWS",
    "Prepared",
    "blob_seeds",
    "diameter_mm",
    "nms",
    "patches",
    "prepare",
    "recentre",
    "region",
    "seed_tiles",
    "symmetric_views",
    "thin",
    "to_model_input",
    "to_window",
]

GRID_MM = 1.0
MASK_MM = 4.0
"""The lung mask is found on a subsample this coarse: it only crops and bounds where candidates may lie, and at
4 mm it costs about a tenth of what it does at 2 mm (30 ms instead of 300 on the shared scans)."""
MASK_MARGIN_MM = 4.0
"""The mask is dilated by this much, so nodules against the chest wall (outside a threshold mask) stay in."""
HU_LOW, HU_HIGH = -1000.0, 400.0
SLAB_OFFSETS = (-2, 0, 2)
"""A first-stage input is a thin slab: the slices this many mm above and below as extra channels (3 channels)."""
SOLID_HU = -400.0
"""Voxels denser than this around a candidate make up its size estimate."""
SEED_MM = 2.0
"""Seeds are found on a 2 mm subsample of the grid: a 3 mm nodule still makes a peak, at an eighth of the cost."""
SEED_SIGMAS_MM = (1.5, 3.0)
"""Difference-of-Gaussians scales (sigma against 2 sigma): blobs of about 2-5 mm radius peak strongest; a larger
nodule peaks inside its rim, which is still within its radius of its centre, and `recentre` moves it inwards. Long
vessels respond less than blobs of their width. Chosen on the composite validation scan (pasted held-out nodules):
larger scales lost its 6-8 mm nodules among vessels."""
SEED_MIN_HU = -600.0
"""A seed's smoothed centre must be at least this dense (part-solid and solid nodules; not air)."""
SEED_MIN_RESPONSE = 0.03
"""Minimum blob response (window units): below it the spot is flat parenchyma or noise."""
SEED_CAP = 2048
"""At most this many seeds per scan (the strongest responses): bounds the first stage at 32 batches per scan. The
shared scans have about 1,600-1,800 seeds; the weakest nodules rank deep among vessels, so the cap is generous."""
RECENTRE_MM = 5.0
RECENTRE_STEPS = 3
RECENTRE_FLOOR_HU = -700.0
"""Candidates move to the centroid within RECENTRE_MM of each voxel's density above RECENTRE_FLOOR_HU (lung
parenchyma), RECENTRE_STEPS times: a short mean shift."""
MEAN, STD = 0.5, 0.5
"""Model inputs are (window - MEAN) / STD."""
PATCH_DEPTH_MM = 8.0
"""A second-stage patch keeps this many slices (mm) around its centre and mirrors them beyond (`thin`), in training
and in use alike: the nodule volumes it learns from are boxes of median depth 8 mm, so deeper real context would
set scan patches apart from every volume patch (a difference the classifier learns instead of nodules)."""


@dataclass(frozen=True, eq=False)
class Prepared:
    """Windowed values (Z, Y, X) on the 1 mm grid over the lungs, their mask, and where the grid sits in the scan."""

    volume: np.ndarray
    """float32 in [0, 1]."""
    mask: np.ndarray
    start: np.ndarray
    """Scan voxel index (k, j, i) = (slice, row, column), fractional, of grid voxel (0, 0, 0)."""
    step: np.ndarray
    """Scan voxels per grid voxel along (slice, row, column)."""
    series_uid: str
    geometry: CTScan
    """The scan's geometry (its voxels dropped), for world coordinates."""
    seeds: np.ndarray
    """Candidate seeds (N, 3), grid positions (z, y, x), strongest blob response first (`blob_seeds`)."""
    seed_ms: float
    """Of the pre-processing time, what finding the seeds took (the dense baseline does not need them)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.volume.shape)  # type: ignore[return-value]

    def to_scan_voxel(self, zyx: np.ndarray) -> np.ndarray:
        """Scan voxel [i, j, k] = [column, row, slice] (N, 3) of grid positions (z, y, x)."""
        kji = self.start + np.asarray(zyx, dtype=np.float64).reshape(-1, 3) * self.step
        return kji[:, ::-1]

    def to_world(self, zyx: np.ndarray) -> np.ndarray:
        return self.geometry.voxel_to_world(self.to_scan_voxel(zyx))

    def from_world(self, xyz: np.ndarray) -> np.ndarray:
        """Grid positions (z, y, x) (N, 3) of world points."""
        ijk = self.geometry.world_to_voxel(np.asarray(xyz, dtype=np.float64).reshape(-1, 3))
        return (ijk[:, ::-1] - self.start) / self.step


def prepare(scan: CTScan) -> Prepared:
    """Mask, crop, resample and window one scan. Raises DataError (from `lung_mask`) when no lung is found."""
    spacing = np.asarray(scan.spacing, dtype=np.float64)
    stride = np.maximum(1, np.rint(MASK_MM / spacing)).astype(int)
    coarse = scan.hu[::stride[0], ::stride[1], ::stride[2]]
    try:
        coarse_mask = lung_mask(coarse, spacing=tuple(spacing * stride))
    except DataError as exc:  # name the scan: the mask is taken on a subsample, which the reader's message cannot
        raise DataError(f"{scan.source} (series {scan.series_uid}): {exc}") from None
    grow = max(1, round(MASK_MARGIN_MM / MASK_MM))
    coarse_mask = ndimage.binary_dilation(coarse_mask, iterations=grow)
    box = lung_bbox(coarse_mask, margin=1)
    lo = np.array([b.start for b in box]) * stride
    hi = np.minimum(np.array([b.stop for b in box]) * stride, scan.shape)
    crop = torch.from_numpy(scan.hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32))
    extent = (hi - lo - 1) * spacing
    size = [int(n) for n in np.floor(extent / GRID_MM + 1e-6) + 1]
    resampled = F.interpolate(crop[None, None], size=size, mode="trilinear", align_corners=True)[0, 0]
    volume = resampled.sub_(HU_LOW).div_(HU_HIGH - HU_LOW).clamp_(0.0, 1.0).numpy()
    part = torch.from_numpy(coarse_mask[box].astype(np.uint8))
    mask = F.interpolate(part[None, None], size=size, mode="nearest")[0, 0].numpy().astype(bool)
    step = (hi - lo - 1) / np.maximum(np.asarray(size) - 1, 1)
    geometry = CTScan(hu=np.zeros((0, 0, 0), np.int16), spacing=scan.spacing, origin=scan.origin,
                      direction=scan.direction, series_uid=scan.series_uid, sop_uids=(), source=scan.source)
    started = time.perf_counter()
    seeds = blob_seeds(volume, mask)
    return Prepared(volume=volume, mask=mask, start=lo.astype(np.float64), step=step, series_uid=scan.series_uid,
                    geometry=geometry, seeds=seeds, seed_ms=(time.perf_counter() - started) * 1000)


def to_window(hu: float | np.ndarray) -> float | np.ndarray:
    """Hounsfield units to the model's window: [0, 1] over HU_LOW..HU_HIGH, clipped."""
    return np.clip((hu - HU_LOW) / (HU_HIGH - HU_LOW), 0.0, 1.0)


def blob_seeds(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Where a nodule could be: local maxima of a multi-scale difference of Gaussians (bright blobs) on a 2 mm
    subsample, inside the lung mask, dense enough at the centre, strongest first, at most SEED_CAP. A classical
    prior that only decides where the learned stages look; they do all the scoring. Grid positions (N, 3)."""
    step = max(1, round(SEED_MM / GRID_MM))
    coarse = np.ascontiguousarray(volume[::step, ::step, ::step], dtype=np.float32)
    inside = mask[::step, ::step, ::step]
    sigmas = sorted({s / SEED_MM for s in SEED_SIGMAS_MM} | {2 * s / SEED_MM for s in SEED_SIGMAS_MM})
    blurred, done, last = {}, coarse, 0.0
    for sigma in sigmas:  # each blur from the previous one (variances add): shorter kernels
        done = ndimage.gaussian_filter(done, np.sqrt(sigma**2 - last**2), truncate=2.5)
        blurred[sigma], last = done, sigma
    response = np.max([blurred[s / SEED_MM] - blurred[2 * s / SEED_MM] for s in SEED_SIGMAS_MM], axis=0)
    dense = blurred[sigmas[0]] > to_window(SEED_MIN_HU)
    where = np.argwhere(inside & dense & (response > SEED_MIN_RESPONSE))
    padded = np.pad(response, 1, constant_values=-np.inf)
    value = response[tuple(where.T)]
    peak = np.ones(len(where), bool)
    for offset in np.argwhere(np.ones((3, 3, 3), bool)) - 1:  # local maxima, tested only where they may be
        peak &= value >= padded[tuple((where + 1 + offset).T)]
    where, value = where[peak], value[peak]
    order = np.argsort(-value, kind="stable")[:SEED_CAP]
    return (where[order] * step).astype(np.float64)


def to_model_input(values: np.ndarray) -> np.ndarray:
    return ((values - MEAN) / STD).astype(np.float32)


def seed_tiles(prepared: Prepared, zyx: np.ndarray, tile: int) -> np.ndarray:
    """First-stage inputs (N, 3, tile, tile), windowed: the slab through each seed, the tile centred on it."""
    reach = max(SLAB_OFFSETS)
    out = np.empty((len(zyx), len(SLAB_OFFSETS), tile, tile), np.float32)
    for n, c in enumerate(np.rint(np.asarray(zyx)).astype(int)):
        block = region(prepared, c - np.array([reach, tile // 2, tile // 2]), (2 * reach + 1, tile, tile))
        out[n] = block[[reach + o for o in SLAB_OFFSETS]]
    return out


def region(prepared: Prepared, lo: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A copy of the volume over [lo, lo + shape), zero (air) outside it."""
    out = np.zeros(shape, np.float32)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + np.asarray(shape), prepared.shape)
    if np.all(src_hi > src_lo):
        a, b = src_lo - lo, src_hi - lo
        out[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = prepared.volume[src_lo[0]:src_hi[0], src_lo[1]:src_hi[1],
                                                               src_lo[2]:src_hi[2]]
    return out


def patches(prepared: Prepared, centres: np.ndarray, size: int) -> np.ndarray:
    """Second-stage inputs (N, 1, size, size, size), windowed, centred on grid positions (z, y, x), `thin`ned."""
    out = np.empty((len(centres), 1, size, size, size), np.float32)
    for n, c in enumerate(np.rint(np.asarray(centres)).astype(int)):
        out[n, 0] = thin(region(prepared, c - size // 2, (size, size, size)))
    return out


VIEWS = (((), False), ((-1,), False), ((-2,), False), ((), True), ((-3,), False), ((-3, -2, -1), False),
          ((-1,), True), ((-2,), True))
"""Symmetries of a patch (axes flipped after an in-plane transpose, if set), in the order stage 2 takes them:
a nodule is a nodule mirrored or turned a quarter turn in plane, so its score should not change under any of them."""


def symmetric_views(patches: np.ndarray, views: int) -> np.ndarray:
    """(N * views, ...) from (N, ..., D, H, W): each patch's first `views` of VIEWS, a patch's views adjacent."""
    out = []
    for flips, transpose in VIEWS[:views]:
        turned = np.swapaxes(patches, -1, -2) if transpose else patches
        out.append(np.flip(turned, flips) if flips else turned)
    return np.ascontiguousarray(np.stack(out, axis=1).reshape(-1, *patches.shape[1:]))


def thin(patch: np.ndarray, depth: int = round(PATCH_DEPTH_MM / GRID_MM)) -> np.ndarray:
    """A patch (P, P, P) with only `depth` slices around its centre: those beyond mirrored in (numpy's
    'symmetric' padding), as a shallower nodule volume's box is (see PATCH_DEPTH_MM)."""
    size = patch.shape[0]
    if depth >= size:
        return patch
    lo = size // 2 - depth // 2
    return np.pad(patch[lo:lo + depth], ((lo, size - lo - depth), (0, 0), (0, 0)), mode="symmetric")


def recentre(prepared: Prepared, zyx: np.ndarray) -> np.ndarray:
    """Move each candidate onto its blob: a few steps of the density-weighted centroid (weights: how far each voxel
    is above lung parenchyma) within RECENTRE_MM. Seeds and windows sit on a 2 mm or coarser lattice and
    off-centre on large nodules; FROC counts a hit only within the nodule's radius of its centre."""
    out = np.asarray(zyx, dtype=np.float64).reshape(-1, 3).copy()
    shape = np.asarray(prepared.shape)
    r = int(np.ceil(RECENTRE_MM / GRID_MM))
    offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * 3, indexing="ij"), -1)
    ball = np.linalg.norm(offsets, axis=-1) * GRID_MM <= RECENTRE_MM
    floor = to_window(RECENTRE_FLOOR_HU)
    for n in range(len(out)):
        for _ in range(RECENTRE_STEPS):
            c = np.clip(np.rint(out[n]).astype(int), 0, shape - 1)
            values = region(prepared, c - r, (2 * r + 1,) * 3)
            weights = np.where(ball, np.clip(values - floor, 0.0, None), 0.0)
            total = weights.sum()
            if total <= 0:
                break
            out[n] = c + (weights[..., None] * offsets).reshape(-1, 3).sum(0) / total
    return out


def diameter_mm(prepared: Prepared, zyx: np.ndarray, reach: int = 16) -> np.ndarray:
    """Size estimate: the diameter of a sphere of the dense (> -400 HU) region connected to each candidate's
    centre, within `reach` mm. A measurement of the image, not of a model."""
    solid = to_window(SOLID_HU)
    shape = np.asarray(prepared.shape)
    sizes = []
    for c in np.rint(np.asarray(zyx)).astype(int):
        c = np.clip(c, 0, shape - 1)
        lo, hi = np.maximum(c - reach, 0), np.minimum(c + reach + 1, shape)
        dense = prepared.volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] > solid
        labels, _ = ndimage.label(dense)
        label = labels[tuple(c - lo)]
        voxels = int((labels == label).sum()) if label else 0
        sizes.append(max(GRID_MM, (6.0 * voxels / np.pi) ** (1.0 / 3.0) * GRID_MM))
    return np.asarray(sizes)


def nms(zyx: np.ndarray, scores: np.ndarray, distance: float, limit: int) -> np.ndarray:
    """Indices of the best-scoring candidates, highest first, none within `distance` voxels of a better one."""
    kept: list[int] = []
    for n in np.argsort(-np.asarray(scores), kind="stable"):
        if all(np.linalg.norm(zyx[n] - zyx[k]) > distance for k in kept):
            kept.append(int(n))
            if len(kept) == limit:
                break
    return np.asarray(kept, dtype=int)
