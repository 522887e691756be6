"""Measure the grey-level window of lidc_slices_64.npz: find each crop of LIDC-IDRI-0002/0003 in its full DICOM scan
(normalised cross-correlation), test the rule it was made by (min-max over each crop's 128x128 context) and fit
the one window uint8 = clip((HU - lo) / (hi - lo) * 255) that comes closest.

    PYTHONPATH=. python benchmarks/lidc_slices_window.py [--data ../shared/data] [--json out.json]

Prints, per crop, where it was found and how well it matches; then how exactly the per-crop rule reproduces the
crops, and the fitted lo/hi with their error in HU. The constants in nas/data/lidc_slices.py (`HU_LOW`,
`HU_HIGH`) and the crop places in tests/data/test_lidc_slices.py come from this run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nas.data.dicom import read_dicom_series
from nas.data.lidc_slices import CONTEXT, read_slices, to_grey, to_hu

PATIENTS = ("LIDC-IDRI-0002", "LIDC-IDRI-0003")
SEARCH_WINDOW_HU = (-1200.0, 600.0)
"""HU clipped to this broad range for the search only, so bone and air do not swamp the correlation."""
NEAR_ENOUGH = 0.98
"""A match beside the nodule's previous slice below this correlation is searched for again everywhere."""


def _ncc_map(slice_fft: np.ndarray, energy: np.ndarray, counts: int, template: np.ndarray,
             shape: tuple[int, int]) -> np.ndarray:
    """Normalised cross-correlation of `template` at every valid offset of one slice."""
    h, w = template.shape
    t = template - template.mean()
    t = t / np.linalg.norm(t)
    t_fft = np.fft.rfft2(t[::-1, ::-1], s=shape)
    corr = np.fft.irfft2(slice_fft * t_fft, s=shape)[h - 1:, w - 1:]
    return corr[: energy.shape[0], : energy.shape[1]] / np.sqrt(np.maximum(energy, 1e-6))


def _window_sums(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums and sums of squares of image over every size x size window (valid positions)."""
    def box(a: np.ndarray) -> np.ndarray:
        c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return box(image), box(image * image)


def locate(crop: np.ndarray, scan_hu: np.ndarray) -> tuple[int, int, int, float]:
    """(slice, row, column, correlation) of the best match of `crop` anywhere in the (z, y, x) scan."""
    size = crop.shape[0]
    shape = (scan_hu.shape[1] + size - 1, scan_hu.shape[2] + size - 1)
    best = (0, 0, 0, -1.0)
    for k in range(scan_hu.shape[0]):
        image = np.clip(scan_hu[k].astype(np.float64), *SEARCH_WINDOW_HU)
        sums, squares = _window_sums(image, size)
        energy = squares - sums * sums / size**2
        ncc = _ncc_map(np.fft.rfft2(image, s=shape), energy, size**2, crop.astype(np.float64), shape)
        r, c = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        if ncc[r, c] > best[3]:
            best = (k, int(r), int(c), float(ncc[r, c]))
    return best


def ncc_at(crop: np.ndarray, scan_hu: np.ndarray, k: int, r: int, c: int) -> float:
    """Correlation of `crop` with the scan's patch whose top-left voxel is (k, r, c); -1 off the scan."""
    size = crop.shape[0]
    if not (0 <= k < scan_hu.shape[0] and 0 <= r <= scan_hu.shape[1] - size and 0 <= c <= scan_hu.shape[2] - size):
        return -1.0
    a = np.clip(scan_hu[k, r:r + size, c:c + size].astype(np.float64), *SEARCH_WINDOW_HU).ravel()
    b = crop.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))


def locate_near(crop: np.ndarray, scan_hu: np.ndarray, k: int, r: int, c: int, slices: int = 3,
                pixels: int = 8) -> tuple[int, int, int, float]:
    """The best match within `slices` and `pixels` of (k, r, c): a nodule's next slice lies beside its last."""
    return max(((kk, rr, cc, ncc_at(crop, scan_hu, kk, rr, cc))
                for kk in range(k - slices, k + slices + 1)
                for rr in range(r - pixels, r + pixels + 1)
                for cc in range(c - pixels, c + pixels + 1)), key=lambda place: place[3])


def fit_window(grey: np.ndarray, hu: np.ndarray) -> tuple[float, float, float]:
    """lo, hi and the RMS error in HU of lo + grey / 255 * (hi - lo), fitted by least squares in HU over the
    pixels not clipped at 0 or 255."""
    keep = (grey > 0) & (grey < 255)
    slope, low = np.polyfit(grey[keep].astype(np.float64), hu[keep].astype(np.float64), 1)
    error = low + slope * grey[keep] - hu[keep]
    return float(low), float(low + 255 * slope), float(np.sqrt(np.mean(error**2)))


def report_errors(lo: float, hi: float, greys: np.ndarray, hus: np.ndarray) -> None:
    """How far `to_hu` with one window lands from the scans' HU, overall, on lung and soft tissue, per crop."""
    error = to_hu(greys, lo, hi) - hus
    keep = (greys > 0) & (greys < 255)
    def rms(where: np.ndarray) -> float:
        return float(np.sqrt(np.mean(error[where] ** 2)))
    per_crop = [rms(keep & (np.arange(len(greys)) == i)[:, None, None]) for i in range(len(greys))]
    print(f"to_hu error: RMS {rms(keep):.1f} HU; lung (< -400 HU) {rms(keep & (hus < -400)):.1f}; soft tissue "
          f"(-100..200 HU) {rms(keep & (hus > -100) & (hus < 200)):.1f}; per crop {min(per_crop):.0f}.."
          f"{max(per_crop):.0f}; 95% of pixels within {np.percentile(np.abs(error[keep]), 95):.0f} HU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--json", type=Path, help="also write the crop places and the fit here")
    args = parser.parse_args()

    slices = read_slices(args.data / "lidc_slices_64.npz")
    places, greys, hus, contexts_hu = [], [], [], []
    start = time.perf_counter()
    for patient in PATIENTS:
        scan = read_dicom_series(args.data / "lidc" / patient)
        rows = np.flatnonzero(slices.patient_id == patient)
        # Each nodule's first slice is searched everywhere; its next slices beside the place found.
        anchors: dict[int, tuple[int, int, int, int]] = {}
        for index in sorted(rows, key=lambda i: (slices.nodule_idx[i], slices.slice_idx[i])):
            crop, nodule, order = slices.images[index], int(slices.nodule_idx[index]), int(slices.slice_idx[index])
            place = None
            if nodule in anchors:
                k0, r0, c0, order0 = anchors[nodule]
                place = locate_near(crop, scan.hu, k0 + order - order0, r0, c0)
            if place is None or place[3] < NEAR_ENOUGH:
                place = locate(crop, scan.hu)
            k, r, c, ncc = place
            anchors[nodule] = (k, r, c, order)
            size = crop.shape[0]
            greys.append(crop)
            hus.append(scan.hu[k, r:r + size, c:c + size])
            edge = (CONTEXT - size) // 2
            contexts_hu.append(scan.hu[k, r - edge:r - edge + CONTEXT, c - edge:c - edge + CONTEXT])
            places.append({"patient": patient, "index": int(index), "nodule_idx": nodule, "slice_idx": order,
                           "k": k, "row": r, "col": c, "ncc": ncc})
            print(f"{patient} crop {index:5d} (nodule {nodule}, slice {order}): slice {k}, row {r}, col {c}, "
                  f"correlation {ncc:.4f}", flush=True)
    greys_all, hus_all, contexts = np.stack(greys), np.stack(hus), np.stack(contexts_hu)
    worst = min(p["ncc"] for p in places)
    print(f"{len(places)} crops located in {time.perf_counter() - start:.0f} s (lowest correlation {worst:.4f})")
    redone = to_grey(contexts).astype(np.int16) - greys_all
    print(f"per-crop min-max over the 128x128 context (to_grey): largest difference {np.abs(redone).max()} grey "
          f"level(s), {np.mean(redone == 0):.2%} of pixels exact; context minima {contexts.min(axis=(1, 2)).min():.0f}"
          f"..{contexts.min(axis=(1, 2)).max():.0f} HU, maxima {contexts.max(axis=(1, 2)).min():.0f}.."
          f"{contexts.max(axis=(1, 2)).max():.0f} HU")
    lo, hi, rms = fit_window(greys_all, hus_all)
    print(f"one window for all crops: lo {lo:.1f} HU, hi {hi:.1f} HU; RMS error {rms:.1f} HU")
    report_errors(lo, hi, greys_all, hus_all)
    if args.json:
        args.json.write_text(json.dumps({"lo": lo, "hi": hi, "rms_hu": rms,
                                         "places": places}, indent=1))


if __name__ == "__main__":
    main()
