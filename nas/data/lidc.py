"""LIDC-IDRI reader annotations (the XML beside each series) placed on their CT scan, and the reference standard.

Up to four radiologists read each scan independently. For a nodule >= 3 mm a read holds one outline per slice
(`roi`: the slice's SOP UID and z, and the boundary pixels) and ratings (`characteristics`: malignancy 1-5 and
others); a nodule < 3 mm is a single point without ratings; a `nonNodule` is a point the reader judged not a
nodule. Reads of one nodule by different readers are clustered by centroid distance; the usual reference standard
(LUNA16's) keeps the clusters >= 3 mm marked by at least 3 readers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.data.ct import CTScan
from nas.errors import DataError

__all__ = [
    "LidcAnnotations",
    "Mark",
    "Nodule",
    "Outline",
    "Read",
    "excluded_points",
    "read_lidc_xml",
    "reference_nodules",
]

CLUSTER_MIN_MM = 5.0
"""Reads join a cluster within max(this, half the cluster's mean diameter) of its centroid."""


@dataclass(frozen=True, eq=False)
class Outline:
    """One slice of a read: boundary pixels (x = column, y = row) on the slice at index `k` of the scan."""

    k: int
    sop_uid: str
    z_mm: float
    inclusion: bool
    """False for an outline that cuts a hole out of the nodule (a cavity)."""
    points: np.ndarray


@dataclass(frozen=True, eq=False)
class Read:
    """One reader's mark of one nodule."""

    reader: str
    nodule_id: str
    outlines: tuple[Outline, ...]
    characteristics: dict[str, int] | None
    """Ratings (subtlety, malignancy, ...), None for a nodule < 3 mm (the LIDC marks those without ratings)."""
    world_mm: tuple[float, float, float]
    """Centroid of the outlined area (of the point, for a small nodule)."""
    diameter_mm: float
    """Diameter of the sphere of the outlined volume (pixels inside the outlines times the slice spacing), as
    LUNA16 computed it (its excluded list's per-read diameters match this to 0.1 mm); 0 for a single point."""

    @property
    def small(self) -> bool:
        return self.characteristics is None

    @property
    def malignancy(self) -> int | None:
        return None if self.characteristics is None else self.characteristics.get("malignancy")


@dataclass(frozen=True)
class Mark:
    """A point finding: a non-nodule, or a nodule < 3 mm; a hard negative or an excluded region for FROC."""

    kind: str
    """'non-nodule' or 'small nodule'."""
    reader: str
    mark_id: str
    world_mm: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class Nodule:
    """Reads of one nodule by different readers, clustered by centroid."""

    world_mm: tuple[float, float, float]
    """Mean of the reads' centroids."""
    voxel: tuple[float, float, float]
    """[i, j, k] = [column, row, slice] of the centroid in the scan, fractional."""
    diameter_mm: float
    """Mean of the reads' diameters."""
    readers: int
    malignancy: float | None
    """Median malignancy over the reads (1 benign .. 5 malignant), None when no read rated it."""
    reads: tuple[Read, ...]


@dataclass(frozen=True, eq=False)
class LidcAnnotations:
    """Everything one LIDC XML says about one scan, in the scan's world coordinates."""

    series_uid: str
    source: Path
    readers: tuple[str, ...]
    nodules: tuple[Nodule, ...]
    """Clusters of the >= 3 mm reads (outlined, rated), any number of readers."""
    small_nodules: tuple[Mark, ...]
    non_nodules: tuple[Mark, ...]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_xml(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.rglob("*.xml"))
        if len(found) == 1:
            return found[0]
        raise DataError(f"{path}: expected one LIDC .xml file in the folder, found {len(found)}"
                        + (f" ({', '.join(p.name for p in found)}); give the file itself" if found else ""))
    raise DataError(f"{path}: no such file or folder; give the LIDC XML that comes with the series")


class _Placer:
    """Turns an XML slice reference (SOP UID, or z position when the UID is not in the scan) into a slice index."""

    def __init__(self, scan: CTScan, source: Path) -> None:
        self.scan, self.source = scan, source
        self.by_uid = {uid: k for k, uid in enumerate(scan.sop_uids)}
        self.slice_z = scan.voxel_to_world(np.column_stack([np.zeros(scan.shape[0]), np.zeros(scan.shape[0]),
                                                            np.arange(scan.shape[0])]))[:, 2]

    def slice(self, sop_uid: str, z_mm: float) -> int:
        if sop_uid in self.by_uid:
            return self.by_uid[sop_uid]
        k = int(np.argmin(np.abs(self.slice_z - z_mm)))
        if abs(self.slice_z[k] - z_mm) > self.scan.spacing[0] / 2:
            raise DataError(f"{self.source}: imageSOP_UID {sop_uid} is not a slice of the scan and imageZposition "
                            f"{z_mm} mm is {abs(self.slice_z[k] - z_mm):.2f} mm from the nearest slice; "
                            f"is this the XML of series {self.scan.series_uid}?")
        return k

    def world(self, x: float, y: float, k: float) -> np.ndarray:
        return self.scan.voxel_to_world(np.array([[x, y, k]]))[0]


def _text(node: ET.Element, name: str, ns: str, source: Path, default: str | None = None) -> str:
    child = node.find(f"{ns}{name}")
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise DataError(f"{source}: a <{_local(node.tag)}> has no <{name}>; the file is not a complete LIDC XML")
    return child.text.strip()


def _points(node: ET.Element, tag: str, ns: str, source: Path) -> np.ndarray:
    points = [(float(_text(e, "xCoord", ns, source)), float(_text(e, "yCoord", ns, source)))
              for e in node.findall(f"{ns}{tag}")]
    if not points:
        raise DataError(f"{source}: a <{_local(node.tag)}> has no <{tag}> points")
    return np.asarray(points, dtype=np.float64)


def _area_centroid(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Pixels strictly inside a closed boundary of pixel centres (Pick's theorem; LIDC draws the outline just
    outside the nodule) and the enclosed polygon's centroid; the mean point for outlines enclosing no area."""
    x, y = points[:, 0], points[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    signed = cross.sum() / 2.0
    if len(points) < 3 or abs(signed) < 1e-9:
        return float(len(points)), points.mean(axis=0)
    centroid = np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * signed)
    return max(abs(signed) - len(points) / 2.0 + 1.0, 0.0), centroid


def _read(node: ET.Element, reader: str, ns: str, place: _Placer, source: Path) -> Read:
    nodule_id = _text(node, "noduleID", ns, source)
    ratings = node.find(f"{ns}characteristics")
    characteristics = None
    if ratings is not None:
        characteristics = {_local(c.tag): int(float(c.text)) for c in ratings if c.text and c.text.strip()}
        characteristics = characteristics or None
    outlines = []
    for roi in node.findall(f"{ns}roi"):
        sop_uid = _text(roi, "imageSOP_UID", ns, source)
        z_mm = float(_text(roi, "imageZposition", ns, source))
        inclusion = _text(roi, "inclusion", ns, source, default="TRUE").upper() == "TRUE"
        outlines.append(Outline(place.slice(sop_uid, z_mm), sop_uid, z_mm, inclusion,
                                _points(roi, "edgeMap", ns, source)))
    if not outlines:
        raise DataError(f"{source}: nodule {nodule_id!r} of reader {reader} has no <roi>")

    weights, centres = [], []
    for o in outlines:
        area, centre = _area_centroid(o.points)
        weights.append(area if o.inclusion else -area)
        centres.append(place.world(centre[0], centre[1], o.k))
    weights_arr = np.asarray(weights)
    volume_mm3 = max(float(weights_arr.sum()), 0.0) * float(np.prod(place.scan.spacing))
    if weights_arr.sum() <= 0:  # a point or a sliver: its pixels' plain mean is the best centre there is
        weights_arr = np.ones(len(outlines))
    world = (weights_arr[:, None] * np.asarray(centres)).sum(0) / weights_arr.sum()
    centroid = (float(world[0]), float(world[1]), float(world[2]))
    return Read(reader, nodule_id, tuple(outlines), characteristics, centroid,
                float((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)))


def _cluster(reads: list[Read], scan: CTScan) -> list[Nodule]:
    """Agglomerate reads, closest pair first, into clusters with at most one read per reader."""
    clusters = [[r] for r in reads]

    def centre(c: list[Read]) -> np.ndarray:
        return np.mean([r.world_mm for r in c], axis=0)

    while True:
        best: tuple[float, int, int] | None = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                if {r.reader for r in clusters[a]} & {r.reader for r in clusters[b]}:
                    continue
                gap = float(np.linalg.norm(centre(clusters[a]) - centre(clusters[b])))
                reach = max(CLUSTER_MIN_MM, np.mean([r.diameter_mm for r in clusters[a] + clusters[b]]) / 2)
                if gap <= reach and (best is None or gap < best[0]):
                    best = (gap, a, b)
        if best is None:
            break
        _, a, b = best
        clusters[a] += clusters.pop(b)

    nodules = []
    for c in clusters:
        world = centre(c)
        ratings = [r.malignancy for r in c if r.malignancy is not None]
        nodules.append(Nodule(
            world_mm=tuple(float(v) for v in world),  # type: ignore[arg-type]
            voxel=tuple(float(v) for v in scan.world_to_voxel(world[None])[0]),  # type: ignore[arg-type]
            diameter_mm=float(np.mean([r.diameter_mm for r in c])),
            readers=len(c),
            malignancy=float(np.median(ratings)) if ratings else None,
            reads=tuple(c),
        ))
    return sorted(nodules, key=lambda n: (-n.readers, -n.diameter_mm))


def read_lidc_xml(path: str | Path, scan: CTScan) -> LidcAnnotations:
    """The LIDC XML at `path` (or the one .xml under a folder) placed on `scan`, which must be its series.

    Outlines are matched to slices by SOP UID, or by z position where the UID is not in the scan; the pixel
    coordinates are those of the original DICOM grid, so give the scan as read (not resampled).
    """
    source = _find_xml(Path(path))
    try:
        root = ET.parse(source).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"{source}: cannot be parsed as XML ({exc})") from None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if _local(root.tag) != "LidcReadMessage":
        raise DataError(f"{source}: root element is <{_local(root.tag)}>, not <LidcReadMessage>; "
                        "is this a LIDC CT annotation file?")
    header = root.find(f"{ns}ResponseHeader")
    if header is None:
        raise DataError(f"{source}: no <ResponseHeader>, so the series it annotates is unknown")
    series_uid = _text(header, "SeriesInstanceUid", ns, source)
    if series_uid != scan.series_uid:
        raise DataError(f"{source}: annotates series {series_uid}, but the scan is series {scan.series_uid}; "
                        "give the XML that sits beside the scan's slices")

    place = _Placer(scan, source)
    readers, reads, small, non_nodules = [], [], [], []
    for n, session in enumerate(root.findall(f"{ns}readingSession"), start=1):
        reader = _text(session, "servicingRadiologistID", ns, source, default=f"reader {n}")
        readers.append(reader)
        for node in session.findall(f"{ns}unblindedReadNodule"):
            read = _read(node, reader, ns, place, source)
            if read.small:
                small.append(Mark("small nodule", reader, read.nodule_id, read.world_mm))
            else:
                reads.append(read)
        for node in session.findall(f"{ns}nonNodule"):
            mark_id = _text(node, "nonNoduleID", ns, source)
            z_mm = float(_text(node, "imageZposition", ns, source))
            k = place.slice(_text(node, "imageSOP_UID", ns, source), z_mm)
            x, y = _points(node, "locus", ns, source).mean(axis=0)
            non_nodules.append(Mark("non-nodule", reader, mark_id,
                                    tuple(float(v) for v in place.world(x, y, k))))  # type: ignore[arg-type]
    if not readers:
        raise DataError(f"{source}: no <readingSession>; the file holds no reads")
    return LidcAnnotations(series_uid, source, tuple(readers), tuple(_cluster(reads, scan)), tuple(small),
                           tuple(non_nodules))


def _annotations(xml: str | Path | LidcAnnotations, scan: CTScan) -> LidcAnnotations:
    return xml if isinstance(xml, LidcAnnotations) else read_lidc_xml(xml, scan)


def reference_nodules(xml: str | Path | LidcAnnotations, scan: CTScan, min_readers: int = 3,
                      min_diameter_mm: float = 3.0) -> list[Nodule]:
    """The reference standard: nodules marked (outlined) by at least `min_readers` readers and at least
    `min_diameter_mm` across; LUNA16's rule by default."""
    found = _annotations(xml, scan)
    return [n for n in found.nodules if n.readers >= min_readers and n.diameter_mm >= min_diameter_mm]


def excluded_points(xml: str | Path | LidcAnnotations, scan: CTScan, min_readers: int = 3,
                    min_diameter_mm: float = 3.0) -> np.ndarray:
    """World (x, y, z) mm (N, 3) of findings that are neither hits nor false positives in FROC, as LUNA16's
    excluded list: nodules failing the reference rule, nodules < 3 mm and non-nodule marks."""
    found = _annotations(xml, scan)
    points = [n.world_mm for n in found.nodules if n.readers < min_readers or n.diameter_mm < min_diameter_mm]
    points += [m.world_mm for m in found.small_nodules + found.non_nodules]
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)
