"""A CT volume in Hounsfield units with its patient-frame geometry, and the processing a nodule task needs.

Conventions, shared with the detect.v1 schema: the array is (Z, Y, X) = (slice, row, column); a voxel index is
written [i, j, k] = [column, row, slice]; world coordinates are millimetres (x, y, z) in the DICOM patient frame
(LPS), the frame of LUNA16's annotations and `.mhd` origins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from nas.errors import DataError

__all__ = ["CTScan", "lung_bbox", "lung_mask", "resample_isotropic", "window"]

LUNG_LEVEL = -600.0
LUNG_WIDTH = 1500.0
AIR_BELOW_HU = -400
MIN_LUNG_ML = 20.0
"""Less air than this inside the body is not a lung (a real lung holds litres; a cropped scan still hundreds)."""
SECOND_LUNG_FRACTION = 0.1
"""The second-largest air region counts as the other lung only if it is this large next to the first
(smaller ones are bowel gas or a bronchus cut off by the threshold)."""


@dataclass(frozen=True, eq=False)
class CTScan:
    """One CT series: HU voxels (Z, Y, X), sorted by position along the slice normal, and where they lie.

    `origin` is the world position of voxel (0, 0, 0); `direction` holds, as columns, the world direction of the
    i (column), j (row) and k (slice) axes. `sop_uids` names the DICOM instance of each sorted slice (empty for
    volumes that are not DICOM slices, such as an `.mhd` file or a resampled scan). No patient-identifying field
    is kept (settled point 14).
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    """(z, y, x) voxel size in mm, in the array's axis order."""
    origin: tuple[float, float, float]
    direction: np.ndarray
    series_uid: str
    sop_uids: tuple[str, ...]
    source: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    def _axes(self) -> np.ndarray:
        """World millimetres per unit step of i, j, k (columns)."""
        return np.asarray(self.direction, dtype=np.float64) * np.asarray(self.spacing[::-1], dtype=np.float64)

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """World (x, y, z) mm of voxel positions [i, j, k] (N, 3); fractional indices are fine."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return np.asarray(self.origin) + ijk @ self._axes().T

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Fractional voxel positions [i, j, k] of world points (N, 3); round them to index the array."""
        xyz = np.asarray(xyz, dtype=np.float64)
        return (xyz - np.asarray(self.origin)) @ np.linalg.inv(self._axes()).T

    def contains(self, ijk: np.ndarray) -> np.ndarray:
        """Whether each voxel position [i, j, k] (N, 3) lies inside the volume once rounded."""
        index = np.rint(np.asarray(ijk, dtype=np.float64)).astype(np.int64)
        size = np.asarray(self.shape[::-1])
        return np.all((index >= 0) & (index < size), axis=-1)


def window(hu: np.ndarray, level: float = LUNG_LEVEL, width: float = LUNG_WIDTH) -> np.ndarray:
    """HU mapped linearly to float32 [0, 1] over [level - width/2, level + width/2] (default: a lung window)."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = level - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)


def resample_isotropic(scan: CTScan, spacing_mm: float = 1.0) -> CTScan:
    """The scan on a grid of `spacing_mm` cubes (linear interpolation), so kernels see the same mm on every axis.

    Voxel (0, 0, 0) stays where it was and the axes keep their directions, so world coordinates stay valid; the
    grid covers the original extent. The result has no per-slice SOP UIDs.
    """
    if spacing_mm <= 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    old = np.asarray(scan.spacing, dtype=np.float64)
    extent = (np.asarray(scan.shape) - 1) * old
    shape = tuple(int(n) for n in np.floor(extent / spacing_mm + 1e-6) + 1)
    # Output voxel o samples input position o * spacing_mm / old (a diagonal map: scipy's fast path).
    hu = ndimage.affine_transform(scan.hu.astype(np.float32), spacing_mm / old, output_shape=shape, order=1,
                                  mode="nearest")
    return replace(scan, hu=np.rint(hu).astype(np.int16), spacing=(spacing_mm,) * 3, sop_uids=())


def lung_mask(scan_or_hu: CTScan | np.ndarray, spacing: tuple[float, float, float] | None = None) -> np.ndarray:
    """A simple lung mask (bool, same shape as the volume) from HU thresholds, for candidate filtering and crops.

    Air (< -400 HU) that touches a slice's edge is outside the body and dropped; of the air left, the largest
    region and the second largest (if it is lung-sized) are kept; holes in each slice (vessels, nodules) are
    filled and a small closing smooths the edge, so juxtavascular nodules stay inside. Juxtapleural nodules may
    sit just outside.

    Args:
        scan_or_hu: a CTScan, or an HU array (Z, Y, X) with `spacing`.
        spacing: (z, y, x) mm; taken from the scan when a CTScan is given.
    """
    if isinstance(scan_or_hu, CTScan):
        hu, spacing, name = scan_or_hu.hu, scan_or_hu.spacing, scan_or_hu.series_uid or str(scan_or_hu.source)
    else:
        if spacing is None:
            raise ValueError("lung_mask needs the (z, y, x) spacing in mm when given a bare HU array")
        hu, name = np.asarray(scan_or_hu), "the given volume"
    if hu.ndim != 3:
        raise DataError(f"no lung found in {name}: expected a 3D (Z, Y, X) volume, got shape {hu.shape}")
    voxel_ml = float(np.prod(spacing)) / 1000.0

    air = hu < AIR_BELOW_HU
    # Label each slice on its own (no links along z), so air outside the body is found slice by slice.
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    labels, count = ndimage.label(air, structure=in_plane)
    outside = np.zeros(count + 1, dtype=bool)  # a lookup table by label: far faster than np.isin here
    for edge in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        outside[edge] = True
    inside = air & ~outside[labels]
    del labels

    regions, count = ndimage.label(inside)
    if count == 0:
        raise DataError(f"no lung found in {name}: no air (< {AIR_BELOW_HU} HU) inside the body; "
                        f"is this a chest CT in Hounsfield units? (HU range {int(hu.min())} to {int(hu.max())})")
    sizes = np.bincount(regions.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    if sizes[order[0]] * voxel_ml < MIN_LUNG_ML:
        raise DataError(f"no lung found in {name}: the largest air region inside the body is "
                        f"{sizes[order[0]] * voxel_ml:.1f} mL, under the {MIN_LUNG_ML:g} mL a lung needs")
    kept = np.zeros(count + 1, dtype=bool)
    kept[order[0] + 1] = True
    if count > 1 and sizes[order[1]] >= SECOND_LUNG_FRACTION * sizes[order[0]]:
        kept[order[1] + 1] = True
    mask = kept[regions]
    del regions

    # Fill and close only inside the lungs' box (plus a margin), which is a fraction of the volume.
    box = lung_bbox(mask, margin=2)
    part = mask[box]
    part = ndimage.binary_closing(part, structure=ndimage.generate_binary_structure(3, 1), iterations=2,
                                  border_value=0) | part
    part = ndimage.binary_fill_holes(part, structure=in_plane)
    mask[box] = part
    return mask


def lung_bbox(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice, slice]:
    """The (z, y, x) slices bounding the mask's True voxels, widened by `margin` voxels and clipped to the array."""
    mask = np.asarray(mask)
    if not mask.any():
        raise DataError("no lung found: the lung mask is empty, so it has no bounding box")
    bounds = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        bounds.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(bounds)  # type: ignore[return-value]
