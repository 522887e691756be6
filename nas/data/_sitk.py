"""One 3D read through SimpleITK for the volume formats (LUNA16's MetaImage, the LIDC volumes' NIfTI), so their
errors read alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.errors import DataError


def read_3d(path: Path, format_name: str, hint: str = "") -> Any:
    """The SimpleITK image of a 3D single-channel file; a file SimpleITK cannot read, or of another shape, is a
    DataError naming it, the format expected (`format_name`, e.g. "a MetaImage") and `hint` (how to mend it)."""
    import SimpleITK as sitk  # heavy; only the volume readers need it

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise DataError(f"{path}: cannot be read as {format_name} ({first}){hint}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: expected a 3D single-channel volume, got {image.GetDimension()}D with "
                        f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    return image
