"""`nas detect`: candidate nodules in one CT series, with an exported two-stage nodule pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli._common import add_json_option, err, print_json

EPILOG = """examples:
  nas detect --model shipped/nodule-3 path/to/LIDC-IDRI-0003
  nas detect --model shipped/nodule-3 path/to/series --json > found.json
  nas detect --model results/nodule-cpu/trials/3 scan.mhd --min-score 0.5
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
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.tasks.nodule.detect import detect

    found = detect(args.model, args.scan, min_score=args.min_score, threads=args.threads, log=err)
    if args.json:
        print_json(found)
        return 0
    model = found["model"]
    print(f"model: validation CPM {_cpm(model['val_cpm'])}, test CPM {_cpm(model['test_cpm'])}"
          + (f"  WARNING: {model['warning']}" if model["warning"] else ""))
    print(f"series {found['series_uid']}: {len(found['candidates'])} candidate(s)")
    print(f"{'score':>6}  {'x mm':>8} {'y mm':>8} {'z mm':>8}  {'col':>6} {'row':>6} {'slice':>6}  {'diam mm':>7}")
    for c in found["candidates"]:
        (x, y, z), (i, j, k) = c["world_mm"], c["voxel"]
        print(f"{c['score']:6.3f}  {x:8.1f} {y:8.1f} {z:8.1f}  {i:6.1f} {j:6.1f} {k:6.1f}  {c['diameter_mm']:7.1f}")
    print("time (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in found["timing_ms"].items()))
    return 0


def _cpm(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.3f}"
