"""Image folders are decoded once: a later load (another epoch, process or study) reads the cached array."""

import numpy as np
import pytest

from nas.data import imagefolder, load_dataset
from nas.tasks import get_task
from test_imagefolder import _build


@pytest.fixture
def decodes(monkeypatch):
    """Counts images decoded while loading a split (the reader's own open, wrapped)."""
    opened = []
    original = imagefolder._open
    monkeypatch.setattr(imagefolder, "_open", lambda path: opened.append(path) or original(path))
    return opened


def test_epochs_and_later_loads_decode_no_image(tmp_path, decodes):
    folder = _build(tmp_path / "xray")
    first = load_dataset(folder)
    first.decoded_cache = tmp_path / "cache"
    decodes.clear()  # the reader samples a few training images to decide channels and size
    train = first.split("train")
    assert len(decodes) == len(train) and len(list((tmp_path / "cache").glob("*-train.npz"))) == 1

    task = get_task("xray")
    decodes.clear()
    for _ in range(2):  # epochs use the resized array, kept per input size
        task.inputs(first, "train", 16)
    assert decodes == []

    again = load_dataset(folder)  # a second process or study on the same results root
    assert again.fingerprint == first.fingerprint
    again.decoded_cache = tmp_path / "cache"
    decodes.clear()
    cached = again.split("train")
    assert decodes == []
    assert np.array_equal(cached.images, train.images) and np.array_equal(cached.labels, train.labels)


def test_a_changed_folder_is_decoded_again(tmp_path, decodes):
    folder = _build(tmp_path / "xray")
    first = load_dataset(folder)
    first.decoded_cache = tmp_path / "cache"
    first.split("val")
    next((folder / "valid").rglob("*.jpeg")).unlink()
    second = load_dataset(folder)
    second.decoded_cache = tmp_path / "cache"
    assert second.fingerprint != first.fingerprint
    decodes.clear()
    assert len(second.split("val")) == len(first.split("val")) - 1 == len(decodes)
    assert len(list((tmp_path / "cache").glob("*-val.npz"))) == 2
