"""LIDC-IDRI axial nodule crops with context (`lidc_slices_64.npz`), the readers' votes per pixel, and their HU.

Each crop is the central 64x64 of a 128x128 crop centred on a nodule's outline on one axial slice, at the scan's
own pixel spacing, stored as uint8 min-max scaled over that 128x128 context (measured on the crops whose full
scans are in `lidc/`, see `HU_LOW`): `to_hu` estimates HU back, `to_grey` makes a full scan's windows look the same.
Split by patient with `nas.data.lidc_vois.patient_split`, the same split as the volumes (settled point 22).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.errors import DataError

__all__ = ["ARRAYS", "CONTEXT", "HU_HIGH", "HU_LOW", "HU_RMS_ERROR", "LidcSlices", "read_slices", "to_grey", "to_hu"]

ARRAYS = ("images", "votes", "patient_id", "nodule_idx", "slice_idx")
MAX_VOTES = 4

CONTEXT = 128
"""Each crop is the central half of a CONTEXT x CONTEXT crop, whose own HU range set its grey levels."""

# Measured with benchmarks/lidc_slices_window.py on the 58 crops whose full scans are in lidc/ (LIDC-IDRI-0002: 28,
# 0003: 30; each found in its scan by normalised cross-correlation, lowest 0.9945). There is no fixed window: every
# crop was min-max scaled over its own 128x128 context, grey = round((HU - min) / (max - min) * 255), which
# `to_grey` reproduces to within 1 grey level on all 58 (exactly on 99.8% of pixels). The context minimum is air
# (-1077..-941 HU on these crops) but the maximum is whatever bone or calcium it held (714..2203 HU), so one
# window can only approximate: these constants are the least-squares fit of HU on grey over the pixels not clipped
# at 0 or 255, and `to_hu` with them is off by 77 HU RMS (31 HU on lung pixels below -400 HU, 115 HU on soft tissue
# -100..200 HU; 6 to 197 HU RMS per crop; 95% of pixels within 222 HU).
HU_LOW = -975.1
HU_HIGH = 1163.7
HU_RMS_ERROR = 77.3
"""The RMS error in HU of `to_hu` with the constants above, on the 58 measured crops."""


def to_hu(images: np.ndarray, low: float | np.ndarray = HU_LOW, high: float | np.ndarray = HU_HIGH) -> np.ndarray:
    """Grey levels of `lidc_slices_64` back to Hounsfield units (float32): low + grey / 255 * (high - low).

    With the default window this is an estimate (about 77 HU RMS, see `HU_LOW`); with each crop's own context
    minimum and maximum (shape (N, 1, 1) against (N, 64, 64) images), known where its full scan is, it is exact to
    half a grey level.
    """
    low32, high32 = np.asarray(low, np.float32), np.asarray(high, np.float32)
    return low32 + np.asarray(images, dtype=np.float32) * ((high32 - low32) / np.float32(255.0))


def to_grey(context_hu: np.ndarray) -> np.ndarray:
    """The uint8 crop `lidc_slices_64` holds for a (..., 128, 128) HU context: its central 64x64, min-max scaled
    over the whole context, so windows cut from a full scan look like the training crops."""
    hu = np.asarray(context_hu, dtype=np.float64)
    if hu.shape[-2:] != (CONTEXT, CONTEXT):
        raise ValueError(f"to_grey needs (..., {CONTEXT}, {CONTEXT}) HU contexts, got shape {hu.shape}")
    low, high = hu.min(axis=(-2, -1), keepdims=True), hu.max(axis=(-2, -1), keepdims=True)
    grey = np.rint((hu - low) / np.maximum(high - low, 1.0) * 255.0)
    edge = (CONTEXT - CONTEXT // 2) // 2
    return grey[..., edge:edge + CONTEXT // 2, edge:edge + CONTEXT // 2].astype(np.uint8)


@dataclass(frozen=True, eq=False)
class LidcSlices:
    """Crops and their labels, one row per crop, every array in the same order."""

    images: np.ndarray
    """uint8 (N, 64, 64) grey levels; `to_hu` gives Hounsfield units."""
    votes: np.ndarray
    """uint8 (N, 64, 64): how many of the four readers outlined the nodule at each pixel (0-4)."""
    patient_id: np.ndarray
    """str (N,) LIDC ids, e.g. LIDC-IDRI-0004."""
    nodule_idx: np.ndarray
    """int (N,) the nodule within its patient."""
    slice_idx: np.ndarray
    """int (N,) the slice's place within its nodule."""
    source: Path

    def __len__(self) -> int:
        return len(self.patient_id)

    @property
    def patients(self) -> list[str]:
        """The distinct patient ids, sorted."""
        return sorted(str(p) for p in np.unique(self.patient_id))

    def subset(self, patients: Iterable[str]) -> LidcSlices:
        """The crops of `patients` only, in file order."""
        keep = np.isin(self.patient_id, list(patients))
        return LidcSlices(self.images[keep], self.votes[keep], self.patient_id[keep], self.nodule_idx[keep],
                          self.slice_idx[keep], self.source)

    def split(self, assignment: Mapping[str, str]) -> dict[str, LidcSlices]:
        """The crops of each split named in `assignment` (patient id to split, as `patient_split` returns);
        patients it does not name are left out."""
        return {name: self.subset(p for p, s in assignment.items() if s == name)
                for name in sorted(set(assignment.values()))}


def read_slices(path: str | Path) -> LidcSlices:
    """Read and check `lidc_slices_64.npz`.

    Raises:
        DataError: the file is missing or not an .npz, an array is missing, or the arrays disagree in
            shape, type or length.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give lidc_slices_64.npz (shared data folder)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [a for a in ARRAYS if a not in archive.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; lidc_slices_64.npz holds "
                                f"{', '.join(ARRAYS)} (found: {', '.join(sorted(archive.files))})")
            arrays = {a: archive[a] for a in ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot be read as an .npz archive ({exc or 'empty file'})") from None
    images, votes = arrays["images"], arrays["votes"]
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{path}: images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    if votes.shape != images.shape or votes.dtype != np.uint8:
        raise DataError(f"{path}: votes must be uint8 of the images' shape {images.shape}, got "
                        f"{votes.dtype} {votes.shape}")
    lengths = {a: len(arrays[a]) for a in ARRAYS[2:] if arrays[a].ndim == 1}
    if lengths != dict.fromkeys(ARRAYS[2:], len(images)):
        raise DataError(f"{path}: patient_id, nodule_idx and slice_idx must be 1-D with one entry per image "
                        f"({len(images)}), got shapes {[arrays[a].shape for a in ARRAYS[2:]]}")
    if votes.size and int(votes.max()) > MAX_VOTES:
        raise DataError(f"{path}: votes go up to {int(votes.max())}; LIDC has {MAX_VOTES} readers, so 0-{MAX_VOTES}")
    return LidcSlices(images, votes, arrays["patient_id"].astype(str), arrays["nodule_idx"].astype(np.int64),
                      arrays["slice_idx"].astype(np.int64), path)
