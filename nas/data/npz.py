"""MedMNIST-style .npz: `{train,val,test}_images` (N, H, W) or (N, H, W, C) uint8 and `{split}_labels`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nas._io import file_digest
from nas.data._dataset import FORMATS, SPLITS, Dataset, Split, binary_labels
from nas.errors import DataError

# MedMNIST files carry no class names; these are PneumoniaMNIST's (its INFO 'label' field).
KNOWN_CLASS_NAMES = {"pneumoniamnist": ["normal", "pneumonia"]}


def _read(path: Path, positive_class: str | None) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot be read as an .npz archive ({exc or 'empty file'})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: is a single .npy array, not an .npz archive with train/val/test arrays")
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
    values = sorted(int(v) for v in np.unique(archive["train_labels"]))
    if len(values) < 2:
        raise DataError(f"{path}: the training split has a single class ({values}); need two")
    names = KNOWN_CLASS_NAMES.get(path.stem.lower(), [str(v) for v in values])
    if len(names) != len(values):
        names = [str(v) for v in values]
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
        labels = archive[f"{split}_labels"].reshape(-1)
        if len(labels) != len(images):
            raise DataError(f"{path}: {split} has {len(images)} images but {len(labels)} labels")
        return Split(np.ascontiguousarray(images), (labels == positive_value).astype(np.int64))

    return Dataset(
        path=path, format="npz", class_names=names, positive_class=positive, in_channels=channels,
        image_size=(int(train_images.shape[1]), int(train_images.shape[2])), fingerprint=file_digest(path),
        _loader=load,
    )


FORMATS.register("npz", _read)
