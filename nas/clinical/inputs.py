"""Images as a clinic has them (PNG, JPEG, DICOM files and folders), turned into what an exported model takes.

DICOM pixels go through the header's own display pipeline (Modality LUT / rescale, then VOI LUT or window, then
MONOCHROME1 inversion), so a radiograph reaches the model looking as a reader sees it; the model's pre-processing
(size, channels, normalisation) is read from the export's io.json, never typed by the user. Nothing that
identifies a patient is kept: a DICOM file yields its pixels and its SOP Instance UID only.

A clinic's files are not all well formed. Whatever one file makes a reader raise (a window of width 0, a text
where the header needs a number, a PNG header claiming 20000x20000 pixels) becomes a DataError naming that file,
so a batch loses that file's row and nothing else; an image that comes out blank (every pixel one value, or not
finite) is refused too, since a score of nothing would look like a real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from nas.errors import DataError, NasError

__all__ = ["DICOM_MODALITIES", "Image", "Preprocessing", "find_inputs", "is_dicom", "read_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MODALITIES: dict[str, tuple[str, ...]] = {"xray": ("CR", "DX", "DR")}
"""DICOM Modality values a task's models accept: computed and digital radiography (DR is not a standard code
but some X-ray systems write it). A CT slice given to an X-ray model is refused, not scored."""


@dataclass(frozen=True)
class Image:
    """Display-ready pixels, (H, W, 1) grey or (H, W, 3) RGB, float32 in [0, 255]."""

    pixels: np.ndarray
    sop_instance_uid: str | None = None


def is_dicom(path: Path) -> bool:
    """A .dcm file, or any file with the 'DICM' marker after the 128-byte preamble (PACS exports often have no
    suffix)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def find_inputs(paths: Sequence[Path]) -> list[Path]:
    """Files named, plus PNG / JPEG / DICOM files found under folders named (recursively, sorted).

    A file named explicitly is kept whatever it is, so one that cannot be read gets an error row rather than
    silently vanishing; inside folders, other files (reports, XML annotations) are skipped.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [f for f in sorted(path.rglob("*"))
                      if f.is_file() and (f.suffix.lower() in IMAGE_SUFFIXES or is_dicom(f))]
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def read_image(path: Path, modalities: Iterable[str]) -> Image:
    """The image in `path`; a DataError naming the file and the reason when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        image = _read_dicom(path, tuple(modalities)) if is_dicom(path) else _read_picture(path)
    except NasError:
        raise
    except Exception as exc:  # pydicom, numpy and Pillow raise many types on hostile files; one file, one error row
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {_cut(str(exc))})") from None
    _check_usable(image.pixels, path)
    return image


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _check_usable(pixels: np.ndarray, path: Path) -> None:
    """A DataError for pixels that are not one (H, W, 1 or 3) image, not finite, or all one value: there is no
    image to score."""
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
        raise DataError(f"{path}: pixel array of shape {pixels.shape} is not one grey or RGB image")
    if not np.isfinite(pixels).all():
        raise DataError(f"{path}: the image has non-finite pixel values after the display pipeline; check its "
                        "rescale and window (RescaleSlope, WindowCenter, WindowWidth)")
    if pixels.size == 0 or pixels.min() == pixels.max():
        value = f" (every pixel {float(pixels.flat[0]):.0f})" if pixels.size else ""
        raise DataError(f"{path}: the image is blank{value} after the display pipeline, so there is nothing to "
                        "score; check its pixel data and window (WindowCenter, WindowWidth)")


def _read_picture(path: Path) -> Image:
    try:
        with PILImage.open(path) as img:
            img.load()
            if img.mode.startswith("I;16"):  # 16-bit grey PNG: full range to 0..255
                return Image(np.asarray(img, dtype=np.float32)[..., None] * (255.0 / 65535.0))
            if img.mode in ("I", "F"):
                return Image(_stretch(np.asarray(img, dtype=np.float64))[..., None])
            arr = np.asarray(img.convert("L" if img.mode in ("1", "L", "LA") else "RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError, PILImage.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot be read as a PNG, JPEG or DICOM image ({_cut(str(exc))})") from None
    if arr.ndim == 2:
        return Image(arr[..., None])
    grey = (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return Image(arr[..., :1] if grey else arr)  # X-rays stored as RGB with three equal channels are grey


def _stretch(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Linear map of [low, high] (default: the image's own range) to [0, 255], clipped."""
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(scaled, 0.0, 255.0).astype(np.float32)


def _read_dicom(path: Path, modalities: tuple[str, ...]) -> Image:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({exc})") from None
    modality = str(ds.get("Modality", "") or "").upper()
    if modality not in modalities:
        accepted = ", ".join(modalities) or "none (this export lists no DICOM modalities)"
        raise DataError(f"{path}: DICOM modality {modality or '(missing)'} does not fit this model, which takes "
                        f"{accepted}; give it images of the kind it was trained on")
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file has no pixel data (Modality {modality})")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames); give one image per file")
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pixel decoders raise many types: unsupported transfer syntax, truncated data, ...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise DataError(f"{path}: cannot decode the DICOM pixel data (transfer syntax {syntax}): {exc}") from None
    uid = str(ds.SOPInstanceUID) if "SOPInstanceUID" in ds else None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if int(ds.get("SamplesPerPixel", 1)) == 3:  # colour: pydicom has converted YBR to RGB already
        top = 2.0 ** int(ds.get("BitsStored", 8)) - 1
        return Image(_stretch(np.asarray(stored, dtype=np.float64), 0.0, top), uid)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(f"{path}: photometric interpretation {photometric} is not supported "
                        "(MONOCHROME1, MONOCHROME2 or RGB)")
    _check_display_fields(ds, path)
    values = apply_modality_lut(stored, ds)
    displayed = apply_voi_lut(values, ds)
    grey = _stretch(np.asarray(displayed, dtype=np.float64), *_voi_output_range(ds))
    if photometric == "MONOCHROME1":  # minimum value is white
        grey = 255.0 - grey
    return Image(grey[..., None], uid)


def _check_display_fields(ds: Any, path: Path) -> None:
    """The rescale and window numbers the display pipeline divides and multiplies by must be finite numbers, and a
    window at least 1 wide (DICOM PS3.3 C.11.2.1.2); a DataError naming the field and value otherwise."""
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword not in ds or ds[keyword].VM == 0:
            continue
        raw = ds[keyword].value
        first = raw[0] if ds[keyword].VM > 1 else raw
        try:
            value = float(first)
        except (TypeError, ValueError):
            value = None
        if value is None or not np.isfinite(value):
            raise DataError(f"{path}: DICOM {keyword} {_cut(str(first), 40)!r} is not a finite number")
        if keyword == "WindowWidth" and value < 1 and "VOILUTSequence" not in ds:
            raise DataError(f"{path}: DICOM WindowWidth {value:g} must be at least 1; the window cannot be applied")


def _voi_output_range(ds: Any) -> tuple[float | None, float | None]:
    """The values the header's VOI transform maps to black and white; None (the image's own range) without one.

    A window's output spans a fixed range (pydicom's, from the bits stored and rescale): probing the window with
    values far outside it returns exactly that range. A VOI LUT's output range is set by its bits per entry.
    """
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        low, high = apply_voi_lut(np.array([-1e12, 1e12]), ds)
        return float(min(low, high)), float(max(low, high))
    return None, None


@dataclass(frozen=True)
class Preprocessing:
    """What the exported model needs done to an image, as io.json records it."""

    size: tuple[int, int]
    channels: int
    mean: float
    std: float

    @classmethod
    def from_io(cls, io: dict[str, Any], source: Path) -> Preprocessing:
        try:
            _, channels, height, width = io["input_shape"]
            return cls((int(height), int(width)), int(channels), float(io["mean"]), float(io["std"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{source}: io.json lacks the pre-processing fields input_shape, mean and std ({exc}); "
                            "re-export the model with `nas export`") from None

    def __call__(self, image: Image) -> np.ndarray:
        """(C, H, W) float32: channels matched, resized as in training (bilinear, antialiased when shrinking),
        scaled to [0, 1] and normalised."""
        pixels = image.pixels
        if self.channels == 1 and pixels.shape[-1] == 3:
            pixels = pixels @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]  # ITU-R 601 luma, as PIL's "L"
        elif self.channels == 3 and pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32).transpose(2, 0, 1))[None]
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                              antialias=self.size[0] < x.shape[-2] or self.size[1] < x.shape[-1])
        return ((x[0] / 255.0 - self.mean) / self.std).numpy()
