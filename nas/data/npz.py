"""MedMNIST-style .npz: `{train,val,test}_images` (N, H, W) or (N, H, W, C) uint8 and `{split}_labels`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nas._io import file_digest
from nas.data._dataset import FORMATS, SPLITS, Dataset, Split, binary_labels, check_labels
from nas.errors import DataError

# MedMNIST files carry no class names; these are PneumoniaMNIST's (its INFO 'label' field).
KNOWN_CLASS_NAMES = {"pneumoniamnist": ["normal", "pneumonia"]}
NPY_MAGIC = b"\x93NUMPY"


def _open(path: Path) -> np.lib.npyio.NpzFile:
    """The archive, or a DataError saying what the file is instead (numpy's own messages give pickle advice)."""
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head == NPY_MAGIC:
        raise DataError(f"{path}: is a single .npy array, not an .npz archive with train/val/test arrays")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: cannot be read as an .npz archive ({'empty file' if not head else 'not a zip'} "
                        "of .npy arrays); give a MedMNIST-style .npz or an image folder with train/ val/ test/")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot be read as an .npz archive ({exc})") from None


def _count(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> int:
    """How many images an array holds, read from its header so a split's images are not loaded to count them."""
    try:
        with archive.zip.open(f"{key}.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape = read(f)[0]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: array '{key}' cannot be read ({exc})") from None
    return int(shape[0]) if shape else 0


def _labels(path: Path, archive: np.lib.npyio.NpzFile, split: str) -> np.ndarray:
    """A split's labels as integers, one per image, or a DataError naming the split, counts and examples."""
    try:
        raw = archive[f"{split}_labels"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: array '{split}_labels' cannot be read ({exc})") from None
    if raw.ndim > 2 or (raw.ndim == 2 and raw.shape[1] != 1):
        raise DataError(f"{path}: {split}_labels has shape {raw.shape}; expected one label per image, (N,) or (N, 1)")
    labels = raw.reshape(-1)
    images = _count(path, archive, f"{split}_images")
    if len(labels) != images:
        raise DataError(f"{path}: {split} has {images} images but {len(labels)} labels")
    if labels.dtype.kind not in "iub":
        integral = np.zeros(len(labels), bool)
        if labels.dtype.kind == "f":
            integral = np.isfinite(labels) & (labels == np.round(labels))
        if not integral.all():
            bad = labels[~integral]
            raise DataError(f"{path}: {split}_labels: {len(bad)} of {len(labels)} labels are not integers "
                            f"(e.g. {', '.join(map(str, np.unique(bad)[:3].tolist()))}); labels are class indices")
    return labels.astype(np.int64)


def _read(path: Path, positive_class: str | None) -> Dataset:
    archive = _open(path)
    keys = set(archive.files)
    for split in SPLITS:
        for part in ("images", "labels"):
            if f"{split}_{part}" not in keys:
                raise DataError(f"{path}: missing array '{split}_{part}' (a MedMNIST-style .npz holds "
                                f"train/val/test _images and _labels; found: {', '.join(sorted(keys))})")
    train_images = archive["train_images"]
    if train_images.dtype != np.uint8 or train_images.ndim not in (3, 4):
        raise DataError(f"{path}: train_images must be uint8 (N, H, W) or (N, H, W, C), "
                        f"got {train_images.dtype} {train_images.shape}")
    labels = {split: _labels(path, archive, split) for split in SPLITS}
    known = KNOWN_CLASS_NAMES.get(path.stem.lower())
    values = list(range(len(known))) if known else sorted(int(v) for v in np.unique(labels["train"]))
    check_labels(path, labels, values)
    names = known or [str(v) for v in values]
    positive, positive_index = binary_labels(path, names, positive_class)
    positive_value = values[positive_index]
    channels = 1 if train_images.ndim == 3 else train_images.shape[3]

    def load(split: str) -> Split:
        images = archive[f"{split}_images"]
        if images.ndim == 3:
            images = images[:, None]
        else:
            images = images.transpose(0, 3, 1, 2)
        if images.shape[1:] != (channels, *train_images.shape[1:3]):
            raise DataError(f"{path}: {split}_images has shape {images.shape}, unlike train_images")
        return Split(np.ascontiguousarray(images), (labels[split] == positive_value).astype(np.int64))

    return Dataset(
        path=path, format="npz", class_names=names, positive_class=positive, in_channels=channels,
        image_size=(int(train_images.shape[1]), int(train_images.shape[2])), fingerprint=file_digest(path),
        _loader=load,
    )


FORMATS.register("npz", _read)
