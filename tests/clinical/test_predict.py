"""`nas predict` on real images as a clinic has them: PNG, JPEG, DICOM radiographs, a CT slice, a broken file."""

from __future__ import annotations

import csv
import json
import shutil
import struct
import time
import zlib
from io import StringIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from clinical.conftest import write_v1_log
from conftest import SHARED, run_nas
from nas.clinical.inputs import read_image
from nas.clinical.shadow import read_log

pytestmark = pytest.mark.slow

XRAY = SHARED / "data" / "chest_xray_224" / "test" / "PNEUMONIA" / "person100_bacteria_475.jpeg"
CT_SERIES = SHARED / "data" / "lidc" / "LIDC-IDRI-0002"
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "NAS-TEST-4711", "PatientBirthDate": "19700101",
           "PatientAddress": "1 Example Street, Springfield"}
UID = generate_uid()


def write_dx(path: Path, grey: np.ndarray) -> Path:
    """`grey` (uint8) as a 12-bit DX radiograph the way a detector stores one: MONOCHROME1 (high values are dark),
    rescaled (intercept -1024) and with a window covering the stored range, so a correct reader recovers `grey`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = DigitalXRayImageStorageForPresentation, UID, "DX"
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 1024, 4096  # modality values -1024..3071 map linearly onto the output range
    ds.PixelData = np.round((255 - grey.astype(np.float64)) * 4095 / 255).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """One real X-ray as PNG, JPEG (the original), DICOM (.dcm, and again without a suffix), plus a CT slice from
    LIDC and a file that is not an image."""
    folder = tmp_path_factory.mktemp("inputs")
    grey = np.asarray(Image.open(XRAY).convert("L"))
    Image.fromarray(grey).save(folder / "xray.png")
    shutil.copyfile(XRAY, folder / "xray.jpeg")
    write_dx(folder / "xray.dcm", grey)
    (folder / "pacs").mkdir()
    shutil.copyfile(folder / "xray.dcm", folder / "pacs" / "IM000001")  # a PACS export: no suffix, DICM marker
    (folder / "pacs" / "notes.txt").write_text("not an image, skipped in a folder")
    shutil.copyfile(sorted(CT_SERIES.rglob("*.dcm"))[0], folder / "ct_slice.dcm")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but cut short")
    return folder


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {Path(r["input"]).name: r for r in csv.DictReader(f)}


def test_dicom_pixels_match_the_png(images):
    png = read_image(images / "xray.png", ("DX",))
    dcm = read_image(images / "xray.dcm", ("DX",))
    assert png.pixels.shape == dcm.pixels.shape == (224, 224, 1)
    assert np.abs(png.pixels - dcm.pixels).max() < 0.5  # MONOCHROME1 inverted, rescale and window undone
    assert dcm.sop_instance_uid == UID
    assert np.array_equal(read_image(images / "xray.jpeg", ()).pixels, png.pixels)  # RGB with equal channels: grey


def test_png_jpeg_and_dicom_get_the_same_score(trained_export, images, tmp_path):
    out = tmp_path / "rows.csv"
    inputs = [images / n for n in ("xray.png", "xray.jpeg", "xray.dcm")] + [images / "pacs"]
    proc = run_nas("predict", "--model", str(trained_export), *map(str, inputs), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(out)
    assert set(rows) == {"xray.png", "xray.jpeg", "xray.dcm", "IM000001"}  # notes.txt skipped in the folder
    printed = list(csv.DictReader(StringIO(proc.stdout), delimiter="\t"))
    assert printed == list(csv.DictReader(StringIO(out.read_text())))  # the terminal shows the CSV's columns, values
    scores = {name: float(r["score"]) for name, r in rows.items()}
    assert scores["xray.jpeg"] == pytest.approx(scores["xray.png"], abs=1e-6)
    assert scores["xray.dcm"] == pytest.approx(scores["xray.png"], abs=1e-3)
    assert scores["IM000001"] == scores["xray.dcm"]
    assert rows["xray.dcm"]["sop_instance_uid"] == UID and rows["xray.png"]["sop_instance_uid"] == ""
    io = json.loads((trained_export / "io.json").read_text())
    low, high = io["referral_band"]
    for r in rows.values():
        score = float(r["score"])
        assert r["decision"] == str(int(score >= io["threshold"]))
        assert r["refer"] == str(low <= score <= high) and float(r["ms"]) > 0 and r["error"] == ""
    assert "it/s" in proc.stderr or "image/s" in proc.stderr  # the progress bar is on stderr


def test_bad_inputs_get_error_rows_and_the_run_goes_on(exported_model, images, tmp_path):
    proc = run_nas("predict", "--model", str(exported_model), str(images / "ct_slice.dcm"), str(images / "broken.png"),
                   str(images / "xray.png"), str(images / "missing.png"), "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is one JSON document, even with failures
    rows = {Path(r["input"]).name: r for r in doc["predictions"]}
    assert doc["failed"] == 3 and list(rows) == ["ct_slice.dcm", "broken.png", "xray.png", "missing.png"]
    assert "DICOM modality CT does not fit this model, which takes CR, DX, DR" in rows["ct_slice.dcm"]["error"]
    assert "ct_slice.dcm" in rows["ct_slice.dcm"]["error"] and rows["ct_slice.dcm"]["score"] is None
    assert "broken.png: cannot be read as a PNG, JPEG or DICOM image" in rows["broken.png"]["error"]
    assert "missing.png: no such file" in rows["missing.png"]["error"]
    assert rows["xray.png"]["error"] is None and 0 <= rows["xray.png"]["score"] <= 1


def test_no_patient_field_reaches_any_output(exported_model, images, tmp_path):
    labels = tmp_path / "reads.csv"
    labels.write_text("input,label\nxray.dcm,1\n")
    outputs = [tmp_path / "rows.csv", tmp_path / "rows.json"]
    texts = []
    for out in outputs:
        proc = run_nas("predict", "--model", str(exported_model), str(images / "xray.dcm"), str(images / "pacs"),
                       "--out", str(out), "--heatmaps", str(tmp_path / "heat"), "--labels", str(labels),
                       "--log", str(tmp_path / "shadow.db"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        texts += [out.read_text(), proc.stdout, proc.stderr]
    assert json.loads(outputs[1].read_text())["predictions"][0]["sop_instance_uid"] == UID
    log_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("shadow.db*"))
    heatmaps = b"".join(p.read_bytes() for p in (tmp_path / "heat").iterdir())
    for value in (*PATIENT.values(), "Doe", "Jane"):
        assert all(value not in text for text in texts), value
        assert value.encode() not in log_bytes and value.encode() not in heatmaps, value
    assert pydicom.dcmread(images / "xray.dcm").PatientName == "Doe^Jane"  # the field was there to leak


def test_labels_go_to_the_shadow_log(exported_model, images, tmp_path):
    labels = tmp_path / "reads.csv"
    labels.write_text("input,label\nxray.png,1\n")
    log = tmp_path / "shadow.db"
    proc = run_nas("predict", "--model", str(exported_model), str(images / "xray.png"), str(images / "xray.jpeg"),
                   "--labels", str(labels), "--log", str(log), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    logged = {Path(p.input).name: p for p in read_log(log).predictions}
    assert logged["xray.png"].label == 1 and logged["xray.jpeg"].label is None
    printed = {Path(r["input"]).name: r for r in csv.DictReader(StringIO(proc.stdout), delimiter="\t")}
    assert logged["xray.png"].score == pytest.approx(float(printed["xray.png"]["score"]), abs=1e-4)


def test_labels_matching_no_input_are_refused(exported_model, images, tmp_path):
    labels = tmp_path / "reads.csv"
    labels.write_text("input,label\nward3/case-017.png,1\nward3/case-018.png,0\n")
    proc = run_nas("predict", "--model", str(exported_model), str(images / "xray.png"), "--labels", str(labels),
                   "--log", str(tmp_path / "shadow.db"), cwd=tmp_path)
    assert proc.returncode == 2 and "ward3/case-017.png" in proc.stderr and "ward3/case-018.png" in proc.stderr


def test_an_export_without_calibration_must_be_re_exported(exported_model, images, tmp_path):
    old = tmp_path / "old-export"
    shutil.copytree(exported_model, old)
    io = json.loads((old / "io.json").read_text())
    for key in ("calibration", "referral_band", "refer_rate"):
        del io[key]
    (old / "io.json").write_text(json.dumps(io))
    proc = run_nas("predict", "--model", str(old), str(images / "xray.png"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no calibration, referral_band" in proc.stderr and "re-export it with `nas export --study clinical " \
        f"--trial 0 --out {old}`" in proc.stderr


def _variant(source: Path, target: Path, **fields) -> Path:
    """A copy of the DICOM `source` with header `fields` set; a str is stored as text (VR LO), as a broken writer
    might store a number."""
    ds = pydicom.dcmread(source)
    for keyword, value in fields.items():
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if isinstance(value, str):
            ds[tag] = pydicom.DataElement(tag, "LO", value)
        else:
            setattr(ds, keyword, value)
    ds.save_as(target)
    return target


def _bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid PNG whose header claims width x height pixels (a few hundred bytes on disk)."""
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))
    return path


HOSTILE = {  # file -> what its error row must say
    "ww0.dcm": "DICOM WindowWidth 0 must be at least 1",
    "ww-negative.dcm": "DICOM WindowWidth -100 must be at least 1",
    "ww-nan.dcm": "DICOM WindowWidth 'nan' is not a finite number",
    "ww-text.dcm": "DICOM WindowWidth 'abc' is not a finite number",
    "slope-text.dcm": "DICOM RescaleSlope 'abc' is not a finite number",
    "bomb.png": "could be decompression bomb",
    "blank.png": "the image is blank (every pixel 0)",
}


def test_one_bad_file_never_costs_the_batch(exported_model, tmp_path):
    """The issue's case (three good DICOMs and one with WindowWidth 0, with --out, --labels and --log) and the other
    inputs that escaped the per-file handling: each gets its error row; every good row is printed, written and
    logged with its label; the run exits 3."""
    folder = tmp_path / "batch"
    folder.mkdir()
    grey = np.asarray(Image.open(XRAY).convert("L"))
    for i in range(3):
        write_dx(folder / f"good{i}.dcm", np.roll(grey, 20 * i, axis=1))
    good = folder / "good0.dcm"
    _variant(good, folder / "ww0.dcm", WindowWidth=0)
    _variant(good, folder / "ww-negative.dcm", WindowWidth=-100)
    _variant(good, folder / "ww-nan.dcm", WindowWidth=float("nan"))  # read before as a blank image, and scored
    _variant(good, folder / "ww-text.dcm", WindowWidth="abc")
    _variant(good, folder / "slope-text.dcm", RescaleSlope="abc")
    _bomb_png(folder / "bomb.png")
    Image.new("L", (64, 64), 0).save(folder / "blank.png")
    labels = tmp_path / "reads.csv"
    labels.write_text("input,label\n" + "".join(f"{name},{i % 2}\n" for i, name in
                                                 enumerate(["good0.dcm", "good1.dcm", "good2.dcm", *HOSTILE])))
    out, log = tmp_path / "rows.csv", tmp_path / "shadow.db"
    proc = run_nas("predict", "--model", str(exported_model), str(folder), "--out", str(out), "--labels", str(labels),
                   "--log", str(log), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "3 scored, 7 failed" in proc.stderr
    rows = _rows(out)
    assert set(rows) == {"good0.dcm", "good1.dcm", "good2.dcm", *HOSTILE}
    printed = {Path(r["input"]).name: r for r in csv.DictReader(StringIO(proc.stdout), delimiter="\t")}
    for name, message in HOSTILE.items():
        assert message in rows[name]["error"] and name in rows[name]["error"], rows[name]
        assert rows[name]["score"] == "" and printed[name]["error"] == rows[name]["error"]
    for name in ("good0.dcm", "good1.dcm", "good2.dcm"):
        assert rows[name]["error"] == "" and 0 <= float(rows[name]["score"]) <= 1
    logged = {Path(p.input).name: p for p in read_log(log).predictions}
    assert set(logged) == {"good0.dcm", "good1.dcm", "good2.dcm"}
    assert [logged[f"good{i}.dcm"].label for i in range(3)] == [0, 1, 0]
    assert [logged[f"good{i}.dcm"].score for i in range(3)] == [pytest.approx(float(rows[f"good{i}.dcm"]["score"]),
                                                                               abs=1e-6) for i in range(3)]


FUZZ_FILES = 30
FUZZ_MUTATIONS: list[tuple[str, list]] = [  # header field -> hostile values (a str is stored as text, VR LO)
    ("WindowWidth", [0, -1, float("nan"), float("inf"), 1e308, "abc", "", "1\\x"]),
    ("WindowCenter", [float("nan"), -1e308, "abc", ""]),
    ("RescaleSlope", [0, -1, float("nan"), 1e308, "abc"]),
    ("RescaleIntercept", [float("inf"), "x"]),
    ("Rows", [0, 1, 65535]),
    ("Columns", [0, 3, 65535]),
    ("BitsAllocated", [0, 1, 7, 32, 64]),
    ("BitsStored", [0, 1, 17, 32]),
    ("HighBit", [0, 99]),
    ("PixelRepresentation", [1, 2]),
    ("SamplesPerPixel", [0, 2, 3]),
    ("PhotometricInterpretation", ["PALETTE COLOR", "YBR_FULL", "", "MONOCHROME3"]),
    ("NumberOfFrames", ["x", "0", "2"]),
    ("Modality", ["", "CT", "dx"]),
    ("VOILUTFunction", ["SIGMOID", "BOGUS"]),
    ("PixelData", [b"", b"\0\1\2"]),
]


def test_fuzzed_dicom_headers_give_one_row_each_and_no_traceback(exported_model, tmp_path):
    """Thirty radiographs, each with one to three header fields set to hostile values (seeded, so a failure
    reproduces): every file gets exactly one row, a score in [0, 1] or an error, and nothing escapes as a
    traceback."""
    rng = np.random.default_rng(20)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    source = write_dx(tmp_path / "source.dcm", np.asarray(Image.open(XRAY).convert("L"))[::2, ::2].copy())
    applied = {}
    for i in range(FUZZ_FILES):
        picks = rng.choice(len(FUZZ_MUTATIONS), size=int(rng.integers(1, 4)), replace=False)
        fields = {FUZZ_MUTATIONS[k][0]: FUZZ_MUTATIONS[k][1][int(rng.integers(len(FUZZ_MUTATIONS[k][1])))]
                  for k in picks}
        applied[f"fuzz{i:02d}.dcm"] = fields
        _variant(source, folder / f"fuzz{i:02d}.dcm", **fields)
    started = time.monotonic()
    proc = run_nas("predict", "--model", str(exported_model), str(folder), "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode in (0, 3), proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - started < 300
    doc = json.loads(proc.stdout)
    rows = {Path(r["input"]).name: r for r in doc["predictions"]}
    assert sorted(rows) == sorted(applied) and len(doc["predictions"]) == FUZZ_FILES
    for name, row in rows.items():
        if row["error"] is None:
            assert 0 <= row["score"] <= 1 and row["decision"] in (0, 1), (name, applied[name])
        else:
            assert row["score"] is None and name in row["error"], (name, applied[name])
    assert doc["failed"] == sum(r["error"] is not None for r in rows.values()) > 0


def test_a_log_that_refuses_the_rows_does_not_cost_the_csv(exported_model, images, tmp_path):
    """A shadow log written before the hash chain is not appended to; the rows still reach --out first."""
    old_log = write_v1_log(tmp_path / "old.db")
    out = tmp_path / "rows.csv"
    proc = run_nas("predict", "--model", str(exported_model), str(images / "xray.png"), "--out", str(out),
                   "--log", str(old_log), cwd=tmp_path)
    assert proc.returncode == 2 and "written before rows were hash-chained" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(_rows(out)) == ["xray.png"] and 0 <= float(_rows(out)["xray.png"]["score"]) <= 1
