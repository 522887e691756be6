"""LIDC reader XML on the real scans: the reference nodules agree with LUNA16's, which was derived from them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import SHARED

from nas.data.ct import CTScan
from nas.data.dicom import read_dicom_series
from nas.data.lidc import LidcAnnotations, excluded_points, read_lidc_xml, reference_nodules
from nas.data.luna16 import read_annotations
from nas.errors import DataError

LIDC = SHARED / "data" / "lidc"
LUNA16 = SHARED / "data" / "luna16"
pytestmark = pytest.mark.skipif(not LIDC.is_dir(), reason=f"shared LIDC scans not found at {LIDC}")


@pytest.fixture(scope="module")
def scans() -> dict[str, CTScan]:
    return {name: read_dicom_series(LIDC / name) for name in ("LIDC-IDRI-0002", "LIDC-IDRI-0003")}


@pytest.fixture(scope="module")
def reads(scans) -> dict[str, LidcAnnotations]:
    return {name: read_lidc_xml(LIDC / name, scan) for name, scan in scans.items()}


def test_reference_nodules_of_0003_match_luna16(scans, reads):
    scan = scans["LIDC-IDRI-0003"]
    ours = reference_nodules(reads["LIDC-IDRI-0003"], scan, min_readers=3)
    theirs = read_annotations(LUNA16 / "annotations.csv", scan.series_uid)
    assert len(ours) == len(theirs) == 3
    for luna in theirs:
        distance = [np.linalg.norm(np.subtract(n.world_mm, luna.world_mm)) for n in ours]
        match = ours[int(np.argmin(distance))]
        assert min(distance) < 1.0  # measured: 0.08 to 0.28 mm
        assert match.diameter_mm == pytest.approx(luna.diameter_mm, rel=0.1)  # measured within 4%
        assert match.readers == 4
        assert 1 <= match.malignancy <= 5
        np.testing.assert_allclose(match.voxel, scan.world_to_voxel([match.world_mm])[0])


def test_0002_has_no_reference_nodule_but_its_two_reader_nodule(scans, reads):
    """LUNA16 counts LIDC-IDRI-0002 negative: its one >= 3 mm nodule (ground glass) has only 2 reads."""
    scan, found = scans["LIDC-IDRI-0002"], reads["LIDC-IDRI-0002"]
    assert reference_nodules(found, scan, min_readers=3) == []
    assert read_annotations(LUNA16 / "annotations.csv", scan.series_uid) == []
    (nodule,) = reference_nodules(found, scan, min_readers=1)
    assert nodule.readers == 2 and len({r.reader for r in nodule.reads}) == 2


def test_reads_sessions_and_marks_are_all_counted(reads):
    """The counts of the XML elements, each placed once: 4 readers; reads with ratings; small reads; non-nodules."""
    for name, (rated, small, non_nodules) in {"LIDC-IDRI-0002": (2, 26, 25), "LIDC-IDRI-0003": (13, 0, 38)}.items():
        found = reads[name]
        assert len(found.readers) == 4
        assert sum(n.readers for n in found.nodules) == rated
        assert all(r.characteristics for n in found.nodules for r in n.reads)
        assert len(found.small_nodules) == small and len(found.non_nodules) == non_nodules
        assert {m.kind for m in found.small_nodules} <= {"small nodule"}


def test_outlines_sit_on_the_slice_their_sop_uid_names(scans, reads):
    scan = scans["LIDC-IDRI-0003"]
    for nodule in reads["LIDC-IDRI-0003"].nodules:
        for read in nodule.reads:
            for outline in read.outlines:
                assert scan.sop_uids[outline.k] == outline.sop_uid
                assert scan.voxel_to_world([[0, 0, outline.k]])[0, 2] == pytest.approx(outline.z_mm, abs=0.01)


def test_placing_by_z_position_gives_the_same_nodules(scans, reads):
    """A scan without SOP UIDs (e.g. LUNA16's .mhd) places outlines by imageZposition instead."""
    scan = scans["LIDC-IDRI-0003"]
    by_z = read_lidc_xml(LIDC / "LIDC-IDRI-0003", dataclasses.replace(scan, sop_uids=()))
    for a, b in zip(by_z.nodules, reads["LIDC-IDRI-0003"].nodules):
        np.testing.assert_allclose(a.world_mm, b.world_mm)


@pytest.mark.parametrize("name", ["LIDC-IDRI-0002", "LIDC-IDRI-0003"])
def test_excluded_points_are_luna16s_excluded_findings(scans, reads, name):
    """Non-nodules, small nodules and nodules failing the rule: each is an entry of annotations_excluded.csv."""
    scan = scans[name]
    ours = excluded_points(reads[name], scan)
    theirs = np.array([a.world_mm for a in read_annotations(LUNA16 / "annotations_excluded.csv", scan.series_uid)])
    assert len(ours) > 30
    nearest = np.linalg.norm(ours[:, None] - theirs[None], axis=-1).min(axis=1)
    assert nearest.max() < 0.5  # measured: at most 0.07 mm


def test_an_xml_of_another_series_names_both_uids(tmp_path, scans):
    xml = next((LIDC / "LIDC-IDRI-0003").rglob("*.xml"))
    theirs = scans["LIDC-IDRI-0003"].series_uid
    other = "1.3.6.1.4.1.14519.5.2.1.6279.6001.000000000000000000000000000001"
    edited = tmp_path / "other.xml"
    edited.write_text(xml.read_text().replace(f">{theirs}<", f">{other}<"))
    with pytest.raises(DataError, match="other.xml: annotates series") as err:
        read_lidc_xml(edited, scans["LIDC-IDRI-0003"])
    assert other in str(err.value) and theirs in str(err.value)


def test_the_xml_of_one_scan_is_refused_for_the_other(scans):
    with pytest.raises(DataError, match="annotates series"):
        read_lidc_xml(LIDC / "LIDC-IDRI-0002", scans["LIDC-IDRI-0003"])


def test_a_broken_xml_names_the_file(tmp_path, scans):
    xml = next((LIDC / "LIDC-IDRI-0003").rglob("*.xml"))
    (tmp_path / "cut.xml").write_text(xml.read_text()[:5000])
    with pytest.raises(DataError, match=r"cut\.xml: cannot be parsed"):
        read_lidc_xml(tmp_path / "cut.xml", scans["LIDC-IDRI-0003"])
