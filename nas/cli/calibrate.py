"""`nas calibrate`: fit a profile's latency estimate to its published latencies and show how well it fits."""

from __future__ import annotations

import argparse

from nas.cli._common import add_json_option, print_json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nas.hardware._profile import HardwareProfile

EXAMPLES = """examples:
  nas calibrate                                  # every profile with a spec sheet
  nas calibrate --hardware jetson-orin-agx
  nas calibrate --hardware jetson-orin-nano --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="fit and show a profile's latency estimate",
        description="Fit the latency estimate of a profile (used where its device cannot be reached) to the "
                    "published latencies in its calibration block, and print the fitted factors, each point's "
                    "published and fitted latency, the fit's error, and where the spec sheet and the latencies "
                    "were published.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hardware", help="hardware profile: name, alias or YAML path (default: every profile with a "
                                      "spec sheet)")
    add_json_option(p)
    p.set_defaults(func=run)


def calibration_document(profile: HardwareProfile) -> dict:
    """The fit a profile's estimates use, its sources, and (for a borrowed fit) the points estimated on it."""
    from nas.hardware.estimate import estimate_points, fit_profile, overhead_scale

    fit = fit_profile(profile)
    borrowed = fit.profile != profile.name
    return {"hardware": profile.name, "fit": fit.as_dict(), "spec_sheet_sources": profile.spec_sheet.sources,
            "overhead_scale": overhead_scale(profile), "estimated_here_ms": estimate_points(profile) if borrowed
            else None}


def run(args: argparse.Namespace) -> int:
    from nas.hardware import list_profiles, load_profile

    profiles = [load_profile(args.hardware)] if args.hardware else [
        p for p in list_profiles() if p.spec_sheet is not None]
    documents = [calibration_document(profile) for profile in profiles]
    if args.json:
        print_json(documents[0] if args.hardware else {"profiles": documents})
        return 0
    for n, doc in enumerate(documents):
        if n:
            print()
        _print(doc)
    return 0


def _print(doc: dict) -> None:
    name, fit, here_ms = doc["hardware"], doc["fit"], doc["estimated_here_ms"]
    print(f"{name}: latency estimate fitted on {len(fit['points'])} points of {fit['source']}")
    for source in doc["spec_sheet_sources"]:
        print(f"  spec sheet: {source}")
    if here_ms is not None:
        print(f"  {name} has no published latencies: these factors were fitted on {fit['profile']}'s points "
              f"and are applied with {name}'s spec sheet (last column), the per-kernel overhead scaled "
              f"x{doc['overhead_scale']:.2f} for its GPU clock")
    print(f"  compute efficiency {fit['eff_compute']:.3f} of peak, memory efficiency {fit['eff_memory']:.3f} of "
          f"bandwidth, overhead {fit['overhead_ms'] * 1e3:.2f} us per kernel\n")
    here_header = f" {'est. ms on ' + name:>28}" if here_ms is not None else ""
    print(f"{'model':<24} {'input':<12} {'precision':<9} {'published ms':>12} {'fitted ms':>10} {'error':>8}"
          f"{here_header}")
    for p, ms_here in zip(fit["points"], here_ms or [None] * len(fit["points"])):
        shape = f"{p['in_channels']}x{p['input_size']}x{p['input_size']}"
        here = f" {ms_here:>28.3f}" if ms_here is not None else ""
        print(f"{p['model']:<24} {shape:<12} {p['precision']:<9} {p['published_ms']:>12.3f} {p['fitted_ms']:>10.3f} "
              f"{p['relative_error']:>+8.1%}{here}")
    print(f"\nfit error: max {fit['max_relative_error']:.1%}, RMS {fit['rms_relative_error']:.1%}")
