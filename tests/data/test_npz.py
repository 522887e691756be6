"""The MedMNIST-style .npz reader: the bundled PneumoniaMNIST copy, layouts, lazy splits and clear errors."""

import os

import numpy as np
import pytest

from nas.data import BUNDLED_PNEUMONIAMNIST, load_dataset
from nas.data._dataset import leakage
from nas.errors import DataError

# MedMNIST v2's published PneumoniaMNIST split sizes and pneumonia counts.
OFFICIAL = {"train": (4708, 3494), "val": (524, 389), "test": (624, 390)}


def _write_npz(path, n=(12, 6, 6), shape=(8, 10), labels=None, drop=(), rng_seed=0):
    """A small random npz; `labels` maps split -> label array (default: alternating 0/1)."""
    rng = np.random.default_rng(rng_seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (labels or {}).get(split, np.arange(count).reshape(-1, 1) % 2)
    for key in drop:
        del arrays[key]
    np.savez(path, **arrays)
    return arrays


@pytest.fixture(scope="module")
def bundled():
    return load_dataset()


def test_bundled_is_the_default_and_binary(bundled):
    assert bundled.path == BUNDLED_PNEUMONIAMNIST
    assert bundled.format == "npz"
    assert bundled.class_names == ["normal", "pneumonia"]
    assert bundled.positive_class == "pneumonia"
    assert bundled.in_channels == 1
    assert bundled.image_size == (28, 28)


@pytest.mark.parametrize("split", OFFICIAL)
def test_bundled_official_splits(bundled, split):
    size, positives = OFFICIAL[split]
    data = bundled.split(split)
    assert len(data) == size
    assert data.images.shape == (size, 1, 28, 28)
    assert data.images.dtype == np.uint8
    assert set(np.unique(data.labels)) == {0, 1}
    assert int(data.labels.sum()) == positives


def test_test_split_is_read_only_when_asked():
    """A search must never touch test: loading train and val leaves it unread."""
    dataset = load_dataset(BUNDLED_PNEUMONIAMNIST)
    dataset.split("train")
    dataset.split("val")
    assert set(dataset._cache) == {"train", "val"}
    dataset.split("test")
    assert "test" in dataset._cache


def test_unknown_split_name(bundled):
    with pytest.raises(ValueError, match="unknown split"):
        bundled.split("validation")


def test_rgb_npz_is_channels_first(tmp_path):
    path = tmp_path / "rgb.npz"
    arrays = _write_npz(path, shape=(8, 10, 3))
    dataset = load_dataset(path)
    assert dataset.in_channels == 3
    assert dataset.image_size == (8, 10)
    train = dataset.split("train")
    assert train.images.shape == (12, 3, 8, 10)
    np.testing.assert_array_equal(train.images, arrays["train_images"].transpose(0, 3, 1, 2))


def test_label_values_and_positive_class(tmp_path):
    """Labels other than 0/1 map to 1 for the positive class, the larger value unless told otherwise."""
    path = tmp_path / "other.npz"
    raw = {s: np.array([3, 7] * (n // 2)) for s, n in zip(("train", "val", "test"), (12, 6, 6))}
    _write_npz(path, labels=raw)
    dataset = load_dataset(path)
    assert dataset.class_names == ["3", "7"]
    assert dataset.positive_class == "7"
    np.testing.assert_array_equal(dataset.split("val").labels, (raw["val"] == 7).astype(int))
    flipped = load_dataset(path, positive_class="3")
    np.testing.assert_array_equal(flipped.split("val").labels, (raw["val"] == 3).astype(int))


def test_missing_array_names_it(tmp_path):
    path = tmp_path / "noval.npz"
    _write_npz(path, drop=("val_images",))
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert str(path) in str(err.value)
    assert "val_images" in str(err.value)


def test_single_class_in_train(tmp_path):
    path = tmp_path / "oneclass.npz"
    _write_npz(path, labels={"train": np.zeros((12, 1), int)})
    with pytest.raises(DataError, match="single class") as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_not_an_npz(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(DataError, match="cannot be read") as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_three_classes_is_not_binary(tmp_path):
    path = tmp_path / "three.npz"
    _write_npz(path, labels={"train": np.arange(12) % 3})
    with pytest.raises(DataError, match="binary") as err:
        load_dataset(path)
    assert str(path) in str(err.value)
    assert "3 classes" in str(err.value)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_leakage_counts_shared_images(tmp_path):
    path = tmp_path / "leak.npz"
    arrays = _write_npz(path)
    arrays["test_images"][2] = arrays["train_images"][5]
    np.savez(path, **arrays)
    counts = leakage(load_dataset(path))
    assert counts == {"train/val": 0, "train/test": 1, "val/test": 0}


@pytest.mark.parametrize("content", ["npy", "empty"])
def test_npy_or_empty_file_is_a_data_error(tmp_path, content):
    path = tmp_path / "data.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros((2, 2), np.uint8))
    else:
        path.write_bytes(b"")
    with pytest.raises(DataError, match=str(path)):
        load_dataset(path)


# Issue 20: labels that used to be rewritten silently (7 and -1 counted as negatives, 0.5/1.5 read as one class)
# are refused when the data is opened, naming the split, the count and example values.
@pytest.mark.parametrize("labels, words", [
    ({"val": np.array([0, 1, 7, -1, 1, 0])}, ["val split: 2 of 6 labels are not one of the classes 0, 1",
                                                "(found -1, 7)"]),
    ({"train": np.array([0.5, 1.5] * 6)}, ["train_labels: 12 of 12 labels are not integers", "e.g. 0.5, 1.5"]),
    ({"test": np.array([0, 1, 1, 0, np.nan, 1])}, ["test_labels: 1 of 6 labels are not integers", "nan"]),
    ({"val": np.array([0, 1, 1, 0, 1])}, ["val has 6 images but 5 labels"]),
    ({"test": np.ones(6, int)}, ["the test split has a single class (1, all 6 labels)"]),
    ({"val": np.zeros((6, 2), int)}, ["val_labels has shape (6, 2)"]),
], ids=["outside-classes", "non-integer", "nan", "count-mismatch", "single-class-test", "two-columns"])
def test_labels_are_never_rewritten(tmp_path, labels, words):
    path = tmp_path / "bad-labels.npz"
    _write_npz(path, labels=labels)
    with pytest.raises(DataError) as err:
        load_dataset(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message


def test_integral_float_labels_are_read_as_classes(tmp_path):
    path = tmp_path / "float.npz"
    _write_npz(path, labels={s: (np.arange(n) % 2).astype(np.float32) for s, n in zip(("train", "val", "test"),
                                                                                     (12, 6, 6))})
    np.testing.assert_array_equal(load_dataset(path).split("val").labels, np.arange(6) % 2)


def test_a_text_file_is_not_an_npz(tmp_path):
    """`--data README.md` used to print numpy's advice about allow_pickle."""
    path = tmp_path / "README.md"
    path.write_text("# nas\n\nA readme, given as --data by mistake.\n")
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert str(err.value) == (f"{path}: cannot be read as an .npz archive (not a zip of .npy arrays); give a "
                              "MedMNIST-style .npz or an image folder with train/ val/ test/")
    assert "pickle" not in str(err.value)
