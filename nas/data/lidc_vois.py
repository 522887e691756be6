"""LIDC-IDRI nodule volumes in Hounsfield units (`lidc_vois/`), their table, and the patient split of all LIDC sets.

The folder holds `nodules.csv` (one row per nodule), `image/<patient>_R_<nodule>.nii.gz` (a box of int16 HU around
the nodule at the scan's own spacing, its origin in the DICOM patient frame, as LUNA16's world coordinates) and
`nodule_mask/` (the same box, non-zero on the nodule). The same patients appear in `lidc/`, `lidc_slices_64.npz`
and here, so every split is by patient id, one hash for all sets (settled point 22).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.data._sitk import read_3d
from nas.errors import ConfigError, DataError

__all__ = [
    "CHARACTERISTICS",
    "TEST_PATIENTS",
    "NoduleRecord",
    "NoduleVolume",
    "load_volumes",
    "patient_split",
    "read_nodule_table",
]

TEST_PATIENTS = ("LIDC-IDRI-0003",)
"""The scan-level test: its full scan is in `lidc/`, so its crops and volumes are never trained on."""
CHARACTERISTICS = ("Malignancy", "Calcification", "InternalStructure", "Lobulation", "Margin", "Sphericity",
                   "Spiculation", "Subtlety", "Texture")
"""The LIDC ratings in `nodules.csv`, each as a text column and a `<name>_value` column."""
COLUMNS = ("patient_id", "nodule_id", "seriesuid", "coordX", "coordY", "coordZ", "diameter_mm",
           "bboxLowX", "bboxLowY", "bboxLowZ", "bboxHighX", "bboxHighY", "bboxHighZ", "Diagnosis",
           *(f"{name}_value" for name in CHARACTERISTICS))
DIAGNOSES = {"Benign": False, "Malign": True}
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class NoduleRecord:
    """One row of `nodules.csv`: a nodule's place, size, diagnosis and the readers' ratings."""

    patient_id: str
    nodule_id: int
    series_uid: str
    centre_mm: tuple[float, float, float]
    """World (x, y, z) in the scan's patient frame, as LUNA16's annotations."""
    diameter_mm: float
    bbox_low_mm: tuple[float, float, float]
    bbox_high_mm: tuple[float, float, float]
    malignant: bool
    """From `Diagnosis` (Malign / Benign: the majority of the readers' malignancy ratings)."""
    characteristics: dict[str, int]
    """The LIDC ratings by name (`Malignancy` 1-5, `Calcification` 1-6, ...), from the `<name>_value` columns."""

    @property
    def name(self) -> str:
        """The file stem of this nodule's volume and mask, `<patient>_R_<nodule>`."""
        return f"{self.patient_id}_R_{self.nodule_id}"


@dataclass(frozen=True, eq=False)
class NoduleVolume:
    """One nodule's box of CT in HU with its mask, at the scan's own spacing."""

    image: np.ndarray
    """int16 HU, (z, y, x)."""
    mask: np.ndarray
    """bool, the image's shape, True on the nodule."""
    spacing_mm: tuple[float, float, float]
    """(z, y, x), in the array's axis order."""
    origin_mm: tuple[float, float, float]
    """World (x, y, z) of voxel [0, 0, 0] in the patient frame; the axes run along +x, +y, +z."""
    patient_id: str
    nodule_id: int
    series_uid: str
    malignant: bool
    diameter_mm: float


def _floats(row: dict[str, str], names: tuple[str, str, str], where: str) -> tuple[float, float, float]:
    try:
        return tuple(float(row[n]) for n in names)  # type: ignore[return-value]
    except ValueError:
        raise DataError(f"{where}: {'/'.join(names)} must be numbers, got {[row[n] for n in names]}") from None


def _record(row: dict[str, str], where: str) -> NoduleRecord:
    if row["Diagnosis"] not in DIAGNOSES:
        raise DataError(f"{where}: Diagnosis is {row['Diagnosis']!r}; expected one of {', '.join(DIAGNOSES)}")
    try:
        nodule_id = int(row["nodule_id"])
        diameter = float(row["diameter_mm"])
        ratings = {name: int(row[f"{name}_value"]) for name in CHARACTERISTICS}
    except ValueError:
        raise DataError(f"{where}: nodule_id and the *_value ratings must be integers and diameter_mm a number, "
                        f"got nodule_id {row['nodule_id']!r}, diameter_mm {row['diameter_mm']!r}, ratings "
                        f"{[row[f'{n}_value'] for n in CHARACTERISTICS]}") from None
    return NoduleRecord(
        patient_id=row["patient_id"], nodule_id=nodule_id, series_uid=row["seriesuid"],
        centre_mm=_floats(row, ("coordX", "coordY", "coordZ"), where), diameter_mm=diameter,
        bbox_low_mm=_floats(row, ("bboxLowX", "bboxLowY", "bboxLowZ"), where),
        bbox_high_mm=_floats(row, ("bboxHighX", "bboxHighY", "bboxHighZ"), where),
        malignant=DIAGNOSES[row["Diagnosis"]], characteristics=ratings,
    )


def _folder(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; give the lidc_vois folder (nodules.csv, image/, nodule_mask/)")
    return root


def read_nodule_table(root: str | Path) -> list[NoduleRecord]:
    """The rows of `<root>/nodules.csv`, in file order.

    Args:
        root: the `lidc_vois` folder.

    Raises:
        DataError: the folder or file is missing, a column is missing, or a value is not of its kind.
    """
    path = _folder(root) / "nodules.csv"
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = tuple(reader.fieldnames or ())
            rows = list(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; the lidc_vois folder needs its nodules.csv beside image/") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    missing = [c for c in COLUMNS if c not in fields]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; nodules.csv needs {', '.join(COLUMNS)}")
    return [_record(row, f"{path}, line {line}") for line, row in enumerate(rows, start=2)]


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Voxels (z, y, x), spacing (x, y, z), origin (x, y, z) and direction of a 3D NIfTI file."""
    import SimpleITK as sitk

    image = read_3d(path, "NIfTI")
    return sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _volume(record: NoduleRecord, image_path: Path, mask_path: Path) -> NoduleVolume:
    if not mask_path.is_file():
        raise DataError(f"{image_path}: has no mask {mask_path}; every volume needs its nodule_mask/ file of the "
                        f"same name (restore it, or remove the volume)")
    hu, spacing, origin, direction = _read_nifti(image_path)
    mask, mask_spacing, mask_origin, mask_direction = _read_nifti(mask_path)
    if not mask.any():
        raise DataError(f"{mask_path}: the mask is empty, so it marks no nodule; restore the file or remove the "
                        f"volume")
    if mask.shape != hu.shape:
        raise DataError(f"{mask_path}: mask shape (z, y, x) {mask.shape} differs from its image's {hu.shape} "
                        f"({image_path}); the mask must cover the same box voxel for voxel")
    if not (np.allclose(mask_spacing, spacing, atol=1e-3) and np.allclose(mask_origin, origin, atol=1e-2)
            and np.allclose(mask_direction, direction, atol=1e-6)):
        raise DataError(f"{mask_path}: mask spacing {mask_spacing} / origin {mask_origin} / direction "
                        f"{mask_direction} differ from its image's {spacing} / {origin} / {direction} "
                        f"({image_path}); the mask must lie on the same grid")
    signs = np.diag(np.asarray(direction, dtype=np.float64).reshape(3, 3))
    if not np.allclose(np.abs(np.asarray(direction)), np.eye(3).ravel(), atol=1e-6):
        raise DataError(f"{image_path}: direction {direction} is not along the patient axes; lidc_vois boxes are "
                        f"axis-aligned (each axis +1 or -1)")
    # 22 of the shipped boxes run along -x and -y; flip those so every box runs along +x, +y, +z from its origin.
    origin = tuple(o + (n - 1) * s * d if d < 0 else o
                   for o, n, s, d in zip(origin, hu.shape[::-1], spacing, signs))
    flipped = tuple(2 - axis for axis in range(3) if signs[axis] < 0)  # array axes are (z, y, x)
    hu, mask = np.flip(hu, flipped), np.flip(mask, flipped)
    if not np.issubdtype(hu.dtype, np.integer):
        raise DataError(f"{image_path}: voxels are {hu.dtype}; expected integer Hounsfield units")
    return NoduleVolume(
        image=np.ascontiguousarray(hu, dtype=np.int16), mask=np.ascontiguousarray(mask != 0),
        spacing_mm=tuple(float(v) for v in spacing[::-1]),  # type: ignore[arg-type]
        origin_mm=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        patient_id=record.patient_id, nodule_id=record.nodule_id, series_uid=record.series_uid,
        malignant=record.malignant, diameter_mm=record.diameter_mm,
    )


def load_volumes(root: str | Path, patients: Iterable[str] | None = None) -> list[NoduleVolume]:
    """Every nodule volume (or those of `patients`), in `nodules.csv` order.

    Rows without a volume file are skipped (the shipped table has two, patient LIDC-IDRI-1002's); a volume file
    without a row is an error, as is a volume without a mask.

    Args:
        root: the `lidc_vois` folder.
        patients: patient ids to load (e.g. one split's); None loads all.

    Raises:
        DataError: a missing folder, file or mask, an empty mask, a mask off its image's grid, a volume not in
            the table, or a requested patient with no volume.
    """
    root = _folder(root)
    records = read_nodule_table(root)
    images = root / "image"
    if not images.is_dir():
        raise DataError(f"{images}: no such folder; lidc_vois keeps its volumes in image/ and masks in nodule_mask/")
    known = {r.name for r in records}
    stray = sorted(p.name for p in images.glob("*.nii.gz") if p.name[: -len(".nii.gz")] not in known)
    if stray:
        raise DataError(f"{images}: {len(stray)} volume(s) have no row in nodules.csv ({', '.join(stray[:3])}); "
                        f"add their rows or remove the files")
    wanted = None if patients is None else set(patients)
    volumes = []
    for record in records:
        if wanted is not None and record.patient_id not in wanted:
            continue
        image_path = images / f"{record.name}.nii.gz"
        if image_path.is_file():
            volumes.append(_volume(record, image_path, root / "nodule_mask" / image_path.name))
    if wanted is not None:
        empty = sorted(wanted - {v.patient_id for v in volumes})
        if empty:
            raise DataError(f"{root}: no volume for patient(s) {', '.join(empty[:5])}"
                            f"{' ...' if len(empty) > 5 else ''}; ask only for patients in nodules.csv with files")
    return volumes


def _unit_hash(patient_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the patient id and seed alone (sha256, not Python's per-process salted hash)."""
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def patient_split(
    patient_ids: Iterable[str],
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    test_patients: Iterable[str] = TEST_PATIENTS,
    exclude: Iterable[str] = (),
) -> dict[str, str]:
    """Each patient's split, "train", "val" or "test", so no patient's data lands in two splits.

    A patient's split depends only on its id and `seed` (a stable hash against the fractions' cumulative
    bounds), not on which other patients are listed, so the same patient falls in the same split in every LIDC
    set. `test_patients` are always "test" (LIDC-IDRI-0003, settled point 22); `exclude`d patients are left out
    of the mapping altogether (e.g. LIDC-IDRI-0002 when its full scan serves as a test scan).

    Args:
        patient_ids: ids to split; repeats are fine.
        fractions: shares of train, val and test, summing to 1.
        seed: another seed gives another, equally stable, split.
        test_patients: ids forced into "test".
        exclude: ids given no split.

    Raises:
        ConfigError: fractions that are not three non-negative numbers summing to 1.
    """
    fractions = tuple(float(f) for f in fractions)  # type: ignore[assignment]
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"patient split fractions {fractions}: need three non-negative shares of train, val "
                          f"and test summing to 1, e.g. (0.7, 0.15, 0.15)")
    forced, skipped = set(test_patients), set(exclude)
    bounds = np.cumsum(fractions[:2])
    split = {}
    for pid in patient_ids:
        if pid in skipped:
            continue
        if pid in forced:
            split[pid] = "test"
        else:
            split[pid] = SPLIT_NAMES[int(np.searchsorted(bounds, _unit_hash(pid, seed), side="right"))]
    return split
