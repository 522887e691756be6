"""`nas detect`: candidate nodules in one CT series, with an exported two-stage nodule pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli._common import add_json_option, err, print_json

EPILOG = """examples:
  nas detect --model shipped/nodule-3 path/to/LIDC-IDRI-0003
  nas detect --model shipped/nodule-3 path/to/series --json > found.json
  nas detect --model results/nodule-cpu/trials/3 scan.mhd --min-score 0.5
  nas detect --model shipped/nodule-3 path/to/LIDC-IDRI-0003 --truth ../shared/data/luna16/annotations.csv
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect", help="find nodules in a CT scan", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a two-stage nodule pipeline (an export, or a nodule trial's folder) on one CT series: a "
                    "folder of DICOM slices or a LUNA16 .mhd file. Prints candidates (world mm in the DICOM patient "
                    "frame, voxel [column, row, slice], diameter estimate, score) and the time of each stage.",
    )
    p.add_argument("--model", type=Path, required=True, help="folder with pipeline.json, screen/ and classify/")
    p.add_argument("scan", type=Path, help="DICOM series folder or .mhd file")
    p.add_argument("--min-score", type=float, default=0.0, help="report candidates scoring at least this (0-1)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--truth", type=Path, metavar="ANNOTATIONS_CSV",
                   help="LUNA16 annotations.csv: say which of the series' reference nodules were found, at which "
                        "rank, and label each candidate (annotations_excluded.csv beside it is used if present)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.tasks.nodule.detect import detect

    found = detect(args.model, args.scan, min_score=args.min_score, threads=args.threads, truth=args.truth, log=err)
    if args.json:
        print_json(found)
        return 0
    model = found["model"]
    print(f"model: validation CPM {_cpm(model['val_cpm'])}, test CPM {_cpm(model['test_cpm'])}"
          + (f"  WARNING: {model['warning']}" if model["warning"] else ""))
    print(f"series {found['series_uid']}: {len(found['candidates'])} candidate(s)")
    truth = found.get("truth")
    print(f"{'rank':>4} {'score':>6}  {'x mm':>8} {'y mm':>8} {'z mm':>8}  {'col':>6} {'row':>6} {'slice':>6}  "
          f"{'diam mm':>7}" + ("  truth" if truth else ""))
    for rank, c in enumerate(found["candidates"], start=1):
        (x, y, z), (i, j, k) = c["world_mm"], c["voxel"]
        print(f"{rank:>4} {c['score']:6.3f}  {x:8.1f} {y:8.1f} {z:8.1f}  {i:6.1f} {j:6.1f} {k:6.1f}  "
              f"{c['diameter_mm']:7.1f}" + (f"  {c['truth']}" if truth else ""))
    if truth:
        _print_truth(truth)
    print("time (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in found["timing_ms"].items()))
    return 0


def _print_truth(truth: dict) -> None:
    nodules = truth["nodules"]
    print(f"reference ({truth['annotations']}): {truth['found']} of {len(nodules)} nodule(s) found, "
          f"{truth['false_positives']} false positive(s) among the candidates")
    for n, nodule in enumerate(nodules, start=1):
        x, y, z = nodule["world_mm"]
        size = f"{nodule['diameter_mm']:.1f} mm" if nodule["diameter_mm"] else "size unknown"
        where = f"nodule {n} at ({x:.1f}, {y:.1f}, {z:.1f}) mm, {size}"
        print(f"  {where}: found at rank {nodule['rank']} (score {nodule['score']:.3f}, "
              f"{nodule['false_positives_above']} false positive(s) above it)" if nodule["found"] else
              f"  {where}: missed")


def _cpm(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.3f}"
