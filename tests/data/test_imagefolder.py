"""The image-folder reader on real chest X-ray JPEGs: layout, channel and size handling, labels, errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.data import load_dataset
from nas.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "chest_xray_224"
# (split folder in the shared data, folder name to create, images per class)
LAYOUT = [("train", "train", 3), ("val", "valid", 2), ("test", "test", 2)]
CLASSES = ("NORMAL", "PNEUMONIA")


def _source(split, cls):
    folder = SHARED / split / cls
    assert folder.is_dir(), f"real chest X-ray images are missing: {folder.resolve()} (expected beside the repo)"
    return sorted(folder.glob("*.jpeg"))


def _build(root, layout=LAYOUT, classes=CLASSES):
    """A copy of a handful of real JPEGs laid out as train/ valid/ test/ with one folder per class."""
    for src_split, name, count in layout:
        for cls in classes:
            (root / name / cls).mkdir(parents=True)
            for f in _source(src_split, cls)[:count]:
                shutil.copy(f, root / name / cls / f.name)
    return root


def _grey(path):
    """The image as a 2-D uint8 array; these JPEGs are RGB with three identical channels."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


@pytest.fixture
def folder(tmp_path):
    return _build(tmp_path / "xray")


def test_loads_real_jpegs(folder):
    dataset = load_dataset(folder)
    assert dataset.format == "imagefolder"
    assert dataset.class_names == ["NORMAL", "PNEUMONIA"]
    assert dataset.positive_class == "PNEUMONIA"
    assert dataset.in_channels == 1
    assert dataset.image_size == (224, 224)
    for _, name, count in LAYOUT:
        split = dataset.split("val" if name == "valid" else name)
        assert split.images.shape == (2 * count, 1, 224, 224)
        assert split.images.dtype == np.uint8
        # files are read class by class in sorted order: NORMAL first
        np.testing.assert_array_equal(split.labels, [0] * count + [1] * count)
        first = sorted((folder / name / "NORMAL").iterdir())[0]
        np.testing.assert_array_equal(split.images[0, 0], _grey(first))


def test_positive_class_flips_labels(folder):
    default = load_dataset(folder).split("train").labels
    flipped = load_dataset(folder, positive_class="NORMAL")
    assert flipped.positive_class == "NORMAL"
    np.testing.assert_array_equal(flipped.split("train").labels, 1 - default)


def test_unknown_positive_class(folder):
    with pytest.raises(DataError) as err:
        load_dataset(folder, positive_class="COVID")
    assert "COVID" in str(err.value)
    assert "NORMAL" in str(err.value) and "PNEUMONIA" in str(err.value)
    assert str(folder) in str(err.value)


def test_png_grey_and_rgba_convert_like_the_jpeg(folder):
    """The same picture saved as grey PNG and as RGBA PNG must load to the same pixels as the JPEG."""
    jpeg = sorted((folder / "train" / "NORMAL").iterdir())[0]
    pixels = _grey(jpeg)
    Image.fromarray(pixels, "L").save(jpeg.with_name("zz_grey.png"))
    Image.fromarray(np.asarray(Image.open(jpeg).convert("RGB"))).convert("RGBA").save(jpeg.with_name("zz_rgba.png"))
    dataset = load_dataset(folder)
    assert dataset.in_channels == 1
    train = dataset.split("train")
    names = sorted(p.name for p in (folder / "train" / "NORMAL").iterdir())
    assert train.images.shape == (len(names) + 3, 1, 224, 224)
    for name in ("zz_grey.png", "zz_rgba.png"):
        np.testing.assert_array_equal(train.images[names.index(name), 0], pixels)


def test_colour_image_makes_three_channels(folder):
    """One colour image in train makes the data set RGB, and grey images then repeat their value per channel."""
    jpeg = sorted((folder / "train" / "PNEUMONIA").iterdir())[0]
    colour = np.asarray(Image.open(jpeg).convert("RGB")).copy()
    colour[..., 0] = 255 - colour[..., 0]
    Image.fromarray(colour).save(jpeg.with_name("zz_colour.png"))
    dataset = load_dataset(folder)
    assert dataset.in_channels == 3
    test = dataset.split("test")
    assert test.images.shape == (4, 3, 224, 224)
    np.testing.assert_array_equal(test.images[:, 0], test.images[:, 2])
    train = dataset.split("train")
    index = 3 + sorted(p.name for p in (folder / "train" / "PNEUMONIA").iterdir()).index("zz_colour.png")
    np.testing.assert_array_equal(train.images[index], colour.transpose(2, 0, 1))


def test_other_size_is_resized_to_the_common_size(folder):
    jpeg = sorted((folder / "valid" / "PNEUMONIA").iterdir())[0]
    original = _grey(jpeg)
    Image.fromarray(original).resize((120, 100)).save(jpeg.with_name("zz_small.png"))
    dataset = load_dataset(folder)
    assert dataset.image_size == (224, 224)
    val = dataset.split("val")
    assert val.images.shape == (5, 1, 224, 224)
    resized = val.images[-1, 0].astype(float)
    assert abs(resized.mean() - original.mean()) < 5
    assert np.corrcoef(resized.ravel(), original.ravel())[0, 1] > 0.9


def test_missing_test_folder(folder):
    shutil.rmtree(folder / "test")
    with pytest.raises(DataError) as err:
        load_dataset(folder)
    message = str(err.value)
    assert str(folder) in message
    assert "test/" in message and "one sub-folder per class" in message


def test_single_class_folder(tmp_path):
    root = _build(tmp_path / "one", classes=("NORMAL",))
    with pytest.raises(DataError, match="at least two classes") as err:
        load_dataset(root)
    assert str(root / "train") in str(err.value)


def test_unreadable_image_is_named(folder):
    bad = folder / "train" / "NORMAL" / "x.jpeg"
    bad.write_bytes(b"\x00not a jpeg\xff" * 50)
    with pytest.raises(DataError) as err:
        load_dataset(folder).split("train")
    assert str(bad) in str(err.value)
    assert "remove or replace" in str(err.value)


def test_unreadable_test_image_fails_when_test_is_read(folder):
    """Only train images are sampled up front, so a bad test file surfaces when test is read, still named."""
    bad = folder / "test" / "PNEUMONIA" / "x.jpeg"
    bad.write_bytes(b"garbage" * 100)
    dataset = load_dataset(folder)
    dataset.split("val")
    with pytest.raises(DataError) as err:
        dataset.split("test")
    assert str(bad) in str(err.value)


def test_fingerprint_tracks_files(folder):
    first = load_dataset(folder).fingerprint
    assert load_dataset(folder).fingerprint == first
    src = sorted((folder / "valid" / "NORMAL").iterdir())[0]
    shutil.copy(src, src.with_name("copy.jpeg"))
    assert load_dataset(folder).fingerprint != first


def test_class_folder_unknown_to_train_is_named(folder):
    """test/Pneumonia beside train/PNEUMONIA would silently make an all-NORMAL test split."""
    (folder / "test" / "PNEUMONIA").rename(folder / "test" / "Pneumonia")
    with pytest.raises(DataError, match=r"'Pneumonia' is not a class of train/.*did you mean 'PNEUMONIA'"):
        load_dataset(folder)


def test_split_missing_a_class_is_named(folder):
    for f in (folder / "valid" / "NORMAL").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"valid: no images .* for class\(es\) NORMAL"):
        load_dataset(folder)


def test_split_with_a_single_class_names_split_and_counts(folder):
    """Issue 20: a split with one class is refused when the data is opened, with what it does hold."""
    shutil.rmtree(folder / "test" / "NORMAL")
    (folder / "test" / "NORMAL").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(folder)
    assert str(err.value) == (f"{folder / 'test'}: no images (.bmp, .jpeg, .jpg, .png, .tif, .tiff) for class(es) "
                              "NORMAL (found 2 PNEUMONIA); every split needs every class")


def _claimed_size_png(path, width, height):
    """A real 8x8 PNG whose header then claims `width` x `height` (the CRC fixed, so Pillow trusts it)."""
    import struct
    import zlib

    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))


def test_decompression_bomb_png_is_a_named_data_error(folder):
    """A PNG claiming 20000x20000 raised Pillow's DecompressionBombError through the reader (a traceback)."""
    bad = folder / "train" / "NORMAL" / "bomb.png"
    _claimed_size_png(bad, 20000, 20000)
    with pytest.raises(DataError) as err:
        load_dataset(folder).split("train")
    assert str(bad) in str(err.value) and "remove or replace" in str(err.value)
