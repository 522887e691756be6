"""`nas calibrate`: fit a profile's latency estimate to its published latencies and show how well it fits."""

from __future__ import annotations

import argparse

from nas.cli._common import add_json_option, print_json

EXAMPLES = """examples:
  nas calibrate --hardware jetson-orin-agx
  nas calibrate --hardware jetson-orin-nano --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="fit and show a profile's latency estimate",
        description="Fit the latency estimate of a profile (used where its device cannot be reached) to the "
                    "published latencies in its calibration block, and print the fitted factors, each point's "
                    "published and fitted latency, and the fit's error.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hardware", required=True, help="hardware profile: name, alias or YAML path")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.hardware import load_profile
    from nas.hardware.estimate import estimate_points, fit_profile

    profile = load_profile(args.hardware)
    fit = fit_profile(profile)
    borrowed = fit.profile != profile.name
    here_ms = estimate_points(profile) if borrowed else None
    if args.json:
        print_json({"hardware": profile.name, "fit": fit.as_dict(), "estimated_here_ms": here_ms})
        return 0
    print(f"{profile.name}: latency estimate fitted on {len(fit.points)} points of {fit.source}")
    if borrowed:
        print(f"  {profile.name} has no published latencies: these factors were fitted on {fit.profile}'s points "
              f"and are applied with {profile.name}'s spec sheet (last column)")
    print(f"  compute efficiency {fit.eff_compute:.3f} of peak, memory efficiency {fit.eff_memory:.3f} of "
          f"bandwidth, overhead {fit.overhead_ms * 1e3:.2f} us per kernel\n")
    here_header = f" {'est. ms on ' + profile.name:>28}" if borrowed else ""
    print(f"{'model':<24} {'input':<12} {'precision':<9} {'published ms':>12} {'fitted ms':>10} {'error':>8}"
          f"{here_header}")
    for p, ms_here in zip(fit.points, here_ms or [None] * len(fit.points)):
        shape = f"{p.in_channels}x{p.input_size}x{p.input_size}"
        here = f" {ms_here:>28.3f}" if ms_here is not None else ""
        print(f"{p.model:<24} {shape:<12} {p.precision:<9} {p.published_ms:>12.3f} {p.fitted_ms:>10.3f} "
              f"{p.relative_error:>+8.1%}{here}")
    print(f"\nfit error: max {fit.max_relative_error:.1%}, RMS {fit.rms_relative_error:.1%}")
    return 0
