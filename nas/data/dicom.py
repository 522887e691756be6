"""A DICOM CT series (one file per slice) read into a `CTScan`, with errors that name the offending file.

Headers are read first without pixels, so a folder that is not one complete CT series is refused quickly;
pixels are read only once the geometry is known to be consistent. Patient-identifying fields are never copied
(settled point 14): only the series and SOP instance UIDs leave this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from nas.data.ct import CTScan
from nas.errors import DataError

__all__ = ["read_dicom_series"]

GAP_FACTOR = 1.5
"""A step between slices this many times the median step means slices are missing."""
ORIENTATION_TOLERANCE = 1e-4
SPACING_TOLERANCE = 1e-3  # mm


@dataclass(frozen=True)
class _Header:
    """The geometry of one slice file, read without its pixels."""

    path: Path
    series_uid: str
    sop_uid: str
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    size: tuple[int, int]


def _candidates(folder: Path) -> list[Path]:
    """Files that may hold slices: `*.dcm`, and files without a suffix (many archives name slices that way)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in {".dcm", ""}
                  and not p.name.startswith("."))


def _field(ds: pydicom.Dataset, path: Path, keyword: str) -> object:
    value = ds.get(keyword)
    if value is None or value == "":
        raise DataError(f"{path}: DICOM field {keyword} is missing; a CT slice needs it to place the image in space")
    return value


def _header(path: Path) -> _Header:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as DICOM ({exc}); remove it from the series folder") from None
    modality = ds.get("Modality", "")
    if modality != "CT":
        raise DataError(f"{path}: Modality is {modality or 'missing'!s}, not CT; give a folder with one CT series")
    position = np.asarray(_field(ds, path, "ImagePositionPatient"), dtype=np.float64)
    orientation = np.asarray(_field(ds, path, "ImageOrientationPatient"), dtype=np.float64)
    spacing = _field(ds, path, "PixelSpacing")
    if position.shape != (3,) or orientation.shape != (6,) or len(spacing) != 2:  # type: ignore[arg-type]
        raise DataError(f"{path}: malformed geometry (ImagePositionPatient needs 3 values, "
                        f"ImageOrientationPatient 6, PixelSpacing 2)")
    return _Header(
        path=path,
        series_uid=str(_field(ds, path, "SeriesInstanceUID")),
        sop_uid=str(_field(ds, path, "SOPInstanceUID")),
        position=position, orientation=orientation,
        pixel_spacing=(float(spacing[0]), float(spacing[1])),  # type: ignore[index]
        size=(int(_field(ds, path, "Rows")), int(_field(ds, path, "Columns"))),  # type: ignore[call-overload]
    )


def _check_one_series(headers: list[_Header], folder: Path) -> None:
    first: dict[str, Path] = {}
    for h in headers:
        first.setdefault(h.series_uid, h.path)
    if len(first) > 1:
        named = "; ".join(f"{uid} (e.g. {path})" for uid, path in first.items())
        raise DataError(f"{folder}: holds {len(first)} series, expected one: {named}; "
                        f"point to the folder of a single series")


def _check_consistent(headers: list[_Header]) -> None:
    ref = headers[0]
    for h in headers[1:]:
        if not np.allclose(h.orientation, ref.orientation, atol=ORIENTATION_TOLERANCE):
            raise DataError(f"{h.path}: ImageOrientationPatient {h.orientation.tolist()} differs from "
                            f"{ref.orientation.tolist()} in {ref.path}; a series needs one orientation")
        if not np.allclose(h.pixel_spacing, ref.pixel_spacing, atol=SPACING_TOLERANCE):
            raise DataError(f"{h.path}: PixelSpacing {list(h.pixel_spacing)} differs from "
                            f"{list(ref.pixel_spacing)} in {ref.path}; a series needs one pixel spacing")
        if h.size != ref.size:
            raise DataError(f"{h.path}: image size (Rows, Columns) {h.size} differs from {ref.size} in {ref.path}")


def _sorted_positions(headers: list[_Header], normal: np.ndarray) -> tuple[list[_Header], np.ndarray]:
    """Slices sorted along the normal, refusing duplicates and gaps (missing slices)."""
    heights = np.array([h.position @ normal for h in headers])
    order = np.argsort(heights, kind="stable")
    headers = [headers[i] for i in order]
    heights = heights[order]
    steps = np.diff(heights)
    for n, step in enumerate(steps):
        if step < SPACING_TOLERANCE:
            raise DataError(f"{headers[n + 1].path}: same slice position ({heights[n]:.3f} mm along the normal) "
                            f"as {headers[n].path}; a series needs one slice per position")
    median = float(np.median(steps))
    for n, step in enumerate(steps):
        if step > GAP_FACTOR * median:
            raise DataError(f"missing slices: a gap of {step:.2f} mm (median step {median:.2f} mm) between "
                            f"{headers[n].path} and {headers[n + 1].path}")
    return headers, heights


def _pixels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One slice in HU: stored values times RescaleSlope plus RescaleIntercept, as int16."""
    try:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, NotImplementedError,
            RuntimeError) as exc:  # what pydicom raises for truncated or undecodable pixel data
        raise DataError(f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc})") from None
    if stored.shape != size:
        raise DataError(f"{path}: pixel data has shape {stored.shape}, but Rows/Columns say {size}")
    slope = float(_field(ds, path, "RescaleSlope"))  # type: ignore[arg-type]
    intercept = float(_field(ds, path, "RescaleIntercept"))  # type: ignore[arg-type]
    if slope == 1.0 and intercept.is_integer():
        hu = stored.astype(np.int32) + int(intercept)
    else:
        hu = np.rint(stored.astype(np.float64) * slope + intercept)
    return np.clip(hu, np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)


def read_dicom_series(folder: str | Path) -> CTScan:
    """The CT series in `folder` (searched recursively, so a LIDC patient folder works) as a `CTScan`.

    Slices are sorted by ImagePositionPatient projected on the slice normal; the slice spacing is the median
    step between them. Raises DataError for anything that is not one complete, consistent CT series.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; give the folder holding one DICOM series (one file per slice)")
    files = _candidates(folder)
    if not files:
        raise DataError(f"{folder}: no DICOM files (*.dcm or files without a suffix) found")
    headers = [_header(p) for p in files]
    _check_one_series(headers, folder)
    if len(headers) < 2:
        raise DataError(f"{headers[0].path}: the series has a single slice; a CT volume needs at least two")
    _check_consistent(headers)

    row, col = headers[0].orientation[:3], headers[0].orientation[3:]
    normal = np.cross(row, col)
    headers, heights = _sorted_positions(headers, normal)
    size = headers[0].size
    hu = np.empty((len(headers), *size), dtype=np.int16)
    for n, h in enumerate(headers):
        hu[n] = _pixels(h.path, size)

    # PixelSpacing is (row spacing = between rows, column spacing = between columns) = (y, x).
    dy, dx = headers[0].pixel_spacing
    return CTScan(
        hu=hu,
        spacing=(float(np.median(np.diff(heights))), dy, dx),
        origin=tuple(float(v) for v in headers[0].position),  # type: ignore[arg-type]
        direction=np.stack([row, col, normal], axis=1),
        series_uid=headers[0].series_uid,
        sop_uids=tuple(h.sop_uid for h in headers),
        source=folder,
    )
