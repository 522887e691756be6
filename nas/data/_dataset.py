"""A labelled image data set with train/val/test splits, read lazily so a search never touches test."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas._registry import Registry
from nas.errors import DataError

SPLITS = ("train", "val", "test")
BUNDLED_PNEUMONIAMNIST = Path(__file__).resolve().parent / "bundled" / "pneumoniamnist.npz"


@dataclass(frozen=True)
class Split:
    """Images as uint8 (N, C, H, W) and integer labels (N,), the positive (abnormal) class being 1."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """What a task needs to know about its data, plus a loader per split."""

    path: Path
    format: str
    class_names: list[str]
    positive_class: str
    in_channels: int
    image_size: tuple[int, int]
    fingerprint: str
    _loader: Callable[[str], Split] = field(repr=False)
    _cache: dict[str, Split] = field(default_factory=dict, repr=False)
    derived: dict[object, object] = field(default_factory=dict, repr=False)
    """Arrays a task derives from this data (e.g. inputs resized once per size), kept with the data itself."""
    _names: Callable[[str], list[str]] | None = field(default=None, repr=False)
    decoded_cache: Path | None = None
    """Where a reader that decodes files (image folders) keeps each split as one uint8 array, keyed by the
    fingerprint (file list, sizes, modification times), so a later process never decodes an image again."""
    decodes: bool = False

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        if name not in self._cache:
            self._cache[name] = self._load_cached(name) if self.decodes and self.decoded_cache else self._loader(name)
        return self._cache[name]

    def case_names(self, name: str) -> list[str]:
        """A name per case of a split, in order: the file's path under the data root for an image folder (what a
        groups or labels file refers to), else `<split>/<index>`."""
        if self._names is not None:
            return self._names(name)
        return [f"{name}/{i}" for i in range(len(self.split(name)))]

    def _load_cached(self, name: str) -> Split:
        height, width = self.image_size
        positive = hashlib.sha1(self.positive_class.encode()).hexdigest()[:8]  # labels depend on it
        path = Path(self.decoded_cache) / f"{self.fingerprint}-{positive}-{self.in_channels}x{height}x{width}-{name}.npz"
        if path.exists():
            try:
                with np.load(path) as saved:
                    return Split(saved["images"], saved["labels"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is decoded again and rewritten
        split = self._loader(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, images=split.images, labels=split.labels)
        partial.replace(path)  # atomic: another process sees the whole file or none
        return split

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.path), "format": self.format, "classes": self.class_names,
            "positive_class": self.positive_class, "in_channels": self.in_channels,
            "image_size": list(self.image_size), "fingerprint": self.fingerprint,
        }


DatasetReader = Callable[[Path, "str | None"], Dataset]
FORMATS: Registry[DatasetReader] = Registry("data format")


def load_dataset(path: str | Path | None = None, *, positive_class: str | None = None) -> Dataset:
    """Open `path` (an .npz file or an image folder); None means the bundled PneumoniaMNIST copy."""
    source = Path(path) if path is not None else BUNDLED_PNEUMONIAMNIST
    if not source.exists():
        raise DataError(f"data not found: {source} (give an .npz file or an image folder with train/ val/ test/)")
    fmt = "npz" if source.is_file() else "imagefolder"
    return FORMATS.get(fmt)(source, positive_class)


def binary_labels(path: Path, class_names: list[str], positive_class: str | None) -> tuple[str, int]:
    """The positive class and its index: the abnormal one, by default the last in sorted order."""
    if len(class_names) != 2:
        raise DataError(f"{path}: the xray task is binary but the data has {len(class_names)} classes "
                        f"({', '.join(class_names)})")
    positive = positive_class if positive_class is not None else class_names[-1]
    if positive not in class_names:
        raise DataError(f"{path}: --positive-class {positive!r} is not one of the classes {class_names}")
    return positive, class_names.index(positive)


SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def check_labels(path: Path, labels: dict[str, np.ndarray], classes: list[int]) -> None:
    """Refuse labels a reader would otherwise rewrite: values outside the data's classes (they would count as
    negatives) and a split holding one class (its AUC and sensitivity are undefined). Training is checked first,
    since the classes may come from it."""
    order = sorted(labels, key=lambda split: split != "train")
    for split in order:
        values = labels[split]
        outside = values[~np.isin(values, classes)]
        present = np.unique(values)
        if len(present) < 2 and not len(outside):
            shown = ", ".join(map(str, present.tolist())) or "none"
            raise DataError(f"{path}: the {SPLIT_NAMES[split]} split has a single class ({shown}, all "
                            f"{len(values)} labels); every split needs both classes")
        if len(outside):
            examples = ", ".join(map(str, np.unique(outside)[:5].tolist()))
            raise DataError(f"{path}: {split} split: {len(outside)} of {len(values)} labels are not one of the "
                            f"classes {', '.join(map(str, classes))} (found {examples})")


def leakage(dataset: Dataset, splits: tuple[str, ...] = SPLITS) -> dict[str, int]:
    """Counts of byte-identical images shared by each pair of splits (settled point 14)."""
    hashes = {
        name: {hashlib.sha1(img.tobytes()).digest() for img in dataset.split(name).images} for name in splits
    }
    return {
        f"{a}/{b}": len(hashes[a] & hashes[b]) for i, a in enumerate(splits) for b in splits[i + 1:]
    }
