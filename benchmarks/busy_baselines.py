"""Do timings survive a busy machine? The space's baselines timed quiet, then while two processes keep the cores
busy, side by side in one run (issue 21's target: under a bounded two-process busy load, each baseline's p50
within 25% of the quiet machine's, or labelled disturbed).

Each model is timed with the profile's own protocol (its retakes and quiet wait included) on ONNX Runtime fp32,
first on the machine as it is, then with two spinning processes started just before and stopped just after.
Run it on an otherwise idle machine: its "quiet" column is only as quiet as the machine.

    python benchmarks/busy_baselines.py                       # 28 and 224 px, the cpu profile
    python benchmarks/busy_baselines.py --sizes 224 --json busy.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import torch

from nas.export import to_onnx
from nas.hardware import Measurement, load_profile, measure
from nas.models import create_model
from nas.spaces import load_space
from nas.spec import Spec, TrainingSpec

TOLERANCE = 0.25
BUSY_BOUND_S = 600.0
"""The spinners' safety bound; they are stopped as soon as the busy timing returns."""


def spin(until: float) -> None:
    x = 0
    while time.time() < until:
        x += 1


def busy_measure(onnx_file: Path, profile, shape: tuple[int, ...]) -> Measurement:
    until = time.time() + BUSY_BOUND_S
    spinners = [multiprocessing.Process(target=spin, args=(until,)) for _ in range(2)]
    for p in spinners:
        p.start()
    try:
        time.sleep(0.5)
        return measure(onnx_file, profile, "fp32", shape)
    finally:
        for p in spinners:
            p.terminate()
            p.join()


def label(m: Measurement) -> str:
    return "disturbed" if m.disturbed else "quiet"


def verdict(quiet: Measurement, busy: Measurement) -> str:
    off = busy.p50_ms / quiet.p50_ms - 1
    if abs(off) <= TOLERANCE:
        return "within 25%"
    return "labelled disturbed" if busy.disturbed else "MISSED: off and unlabelled"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="xray")
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 224])
    parser.add_argument("--profile", default="cpu", help="hardware profile (its protocol, threads and retakes)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    profile = load_profile(args.profile)
    space = load_space(args.space)
    recipe = TrainingSpec(**space.training_defaults())
    rows = []
    print(f"{'model':<24} {'px':>4} {'quiet p50':>10} {'busy p50':>10} {'busy/quiet':>10} {'quiet label':>12} "
          f"{'busy label':>11} {'takes':>5}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for baseline in space.baselines:
                spec = Spec(family=baseline.family, arch=baseline.arch, input_size=size, in_channels=1,
                            num_classes=2, training=recipe, baseline=baseline.name)
                torch.manual_seed(0)
                onnx_file = to_onnx(create_model(spec).eval(), spec.input_shape, Path(tmp) / f"{baseline.name}.onnx")
                quiet = measure(onnx_file, profile, "fp32", spec.input_shape)
                busy = busy_measure(onnx_file, profile, spec.input_shape)
                row = {"model": baseline.name, "size": size, "quiet": quiet.model_dump(mode="json"),
                       "busy": busy.model_dump(mode="json"), "ratio": busy.p50_ms / quiet.p50_ms,
                       "verdict": verdict(quiet, busy)}
                rows.append(row)
                print(f"{baseline.name:<24} {size:>4} {quiet.p50_ms:>10.3f} {busy.p50_ms:>10.3f} {row['ratio']:>10.2f} "
                      f"{label(quiet):>12} {label(busy):>11} {busy.attempts:>5}  {row['verdict']}", flush=True)
    missed = [r for r in rows if r["verdict"].startswith("MISSED")]
    quiet_labelled = [r for r in rows if r["quiet"]["disturbance"] and r["quiet"]["disturbance"]["disturbed"]]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} busy timings within {TOLERANCE:.0%} of quiet or labelled "
          f"disturbed; {len(quiet_labelled)} of {len(rows)} quiet timings labelled disturbed (false alarms if the "
          "machine was idle)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
