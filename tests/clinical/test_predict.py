"""`nas predict` on real images as a clinic has them: PNG, JPEG, DICOM radiographs, a CT slice, a broken file."""

from __future__ import annotations

import csv
import json
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

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
