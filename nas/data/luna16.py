"""LUNA16's files: scans as MetaImage (`.mhd` + `.raw`) and the reference nodules as CSV in world millimetres."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.data._sitk import read_3d
from nas.data.ct import CTScan
from nas.errors import DataError

__all__ = ["Annotation", "read_annotations", "read_mhd"]

COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


@dataclass(frozen=True)
class Annotation:
    """One LUNA16 finding: a nodule (annotations.csv) or an excluded region (annotations_excluded.csv)."""

    series_uid: str
    world_mm: tuple[float, float, float]
    """(x, y, z) in the scan's patient frame (LPS), as DICOM ImagePositionPatient and the .mhd origin."""
    diameter_mm: float | None
    """None where LUNA16 gives -1 (unknown: excluded findings without an outline)."""


def read_mhd(path: str | Path) -> CTScan:
    """A LUNA16 `.mhd` scan (HU already) with its origin, spacing and direction; the series UID is the file stem."""
    import SimpleITK as sitk  # heavy; only the LUNA16 path needs it

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a LUNA16 scan's .mhd header (its .raw beside it)")
    image = read_3d(path, "a MetaImage", "; is its .raw file beside it?")
    hu = sitk.GetArrayFromImage(image)  # (Z, Y, X)
    if hu.dtype != np.int16:
        if not np.issubdtype(hu.dtype, np.integer) and not np.array_equal(hu, np.rint(hu)):
            raise DataError(f"{path}: voxels are {hu.dtype} with fractions; expected integer Hounsfield units")
        hu = np.clip(hu, np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)
    return CTScan(
        hu=hu,
        spacing=tuple(float(v) for v in image.GetSpacing()[::-1]),  # type: ignore[arg-type]
        origin=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
        # ITK's direction matrix is row-major with the axes' directions as columns, as CTScan's.
        direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3),
        series_uid=path.stem,
        sop_uids=(),
        source=path,
    )


def read_annotations(csv_path: str | Path, series_uid: str | None = None) -> list[Annotation]:
    """The findings of one series (all series when None) from `annotations.csv` or `annotations_excluded.csv`."""
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = tuple(reader.fieldnames or ())
            rows = list(reader)
    except OSError as exc:
        raise DataError(f"{csv_path}: cannot be read ({exc.strerror})") from None
    missing = [c for c in COLUMNS if c not in fields]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)}; a LUNA16 annotation file has "
                        f"{','.join(COLUMNS)}")
    found = []
    for line, row in enumerate(rows, start=2):
        if series_uid is not None and row["seriesuid"] != series_uid:
            continue
        try:
            xyz = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
            diameter = float(row["diameter_mm"])
        except (TypeError, ValueError):
            raise DataError(f"{csv_path}, line {line}: coordX/coordY/coordZ/diameter_mm must be numbers, got "
                            f"{[row.get(c) for c in COLUMNS[1:]]}") from None
        found.append(Annotation(row["seriesuid"], xyz, diameter if diameter > 0 else None))
    return found
