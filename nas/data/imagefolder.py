"""Image folders: `train/`, `val/` (or `valid/`), `test/`, each with one sub-folder per class."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nas.data._dataset import FORMATS, SPLITS, Dataset, Split, binary_labels
from nas.errors import DataError, did_you_mean

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid"), "test": ("test",)}


def _split_dir(root: Path, split: str) -> Path:
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: no {' or '.join(f'{n}/' for n in SPLIT_FOLDERS[split])} folder; an image folder "
                    "needs train/, val/ (or valid/) and test/, each with one sub-folder per class")


def _files(split_dir: Path, class_names: list[str]) -> list[tuple[Path, int]]:
    items = []
    for index, name in enumerate(class_names):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        items += [(f, index) for f in sorted(folder.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    return items


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot be read as an image ({exc}); remove or replace the file") from None


def _is_grey(img: Image.Image) -> bool:
    if img.mode in ("L", "I;16", "I", "F", "1"):
        return True
    rgb = np.asarray(img.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _read(root: Path, positive_class: str | None) -> Dataset:
    train_dir = _split_dir(root, "train")
    class_names = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if len(class_names) < 2:
        raise DataError(f"{train_dir}: found {len(class_names)} class folder(s) ({', '.join(class_names) or 'none'});"
                        " a classifier needs one sub-folder per class and at least two classes")
    positive, positive_index = binary_labels(root, class_names, positive_class)
    for split in SPLITS:
        split_dir = _split_dir(root, split)
        for folder in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            if folder.name not in class_names:
                raise DataError(f"{folder}: class folder {folder.name!r} is not a class of train/ "
                                f"({', '.join(class_names)}){did_you_mean(folder.name, class_names)}")
    files = {split: _files(_split_dir(root, split), class_names) for split in SPLITS}
    for split, items in files.items():
        counts = Counter(class_names[label] for _, label in items)
        missing = [c for c in class_names if not counts[c]]
        if missing:
            found = ", ".join(f"{counts[c]} {c}" for c in class_names if counts[c]) or "none"
            raise DataError(f"{_split_dir(root, split)}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                            f"for class(es) {', '.join(missing)} (found {found}); every split needs every class")
    # Channels and size are decided from the training images so every split is converted the same way.
    sample = [_open(f) for f, _ in files["train"][:: max(1, len(files["train"]) // 50)]]
    channels = 1 if all(_is_grey(img) for img in sample) else 3
    size = Counter(img.size for img in sample).most_common(1)[0][0]  # (width, height)
    listing = "\n".join(f"{f.relative_to(root)}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
                        for items in files.values() for f, _ in items)
    fingerprint = hashlib.sha256(listing.encode()).hexdigest()[:16]

    def load(split: str) -> Split:
        images = np.empty((len(files[split]), channels, size[1], size[0]), np.uint8)
        labels = np.empty(len(files[split]), np.int64)
        for i, (f, label) in enumerate(files[split]):
            img = _open(f).convert("L" if channels == 1 else "RGB")
            if img.size != size:
                img = img.resize(size, Image.BILINEAR)
            arr = np.asarray(img)
            images[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
            labels[i] = int(label == positive_index)
        return Split(images, labels)

    return Dataset(
        path=root, format="imagefolder", class_names=class_names, positive_class=positive, in_channels=channels,
        image_size=(size[1], size[0]), fingerprint=fingerprint, _loader=load, decodes=True,
        _names=lambda split: [f.relative_to(root).as_posix() for f, _ in files[split]],
    )


FORMATS.register("imagefolder", _read)
