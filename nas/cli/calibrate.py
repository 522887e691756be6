"""`nas calibrate`: fit a profile's latency estimate to its published latencies and show how well it fits; with
`--measure N --holdout M`, fit a latency predictor on candidates measured on the profile's device instead."""

from __future__ import annotations

import argparse

from pathlib import Path
from typing import TYPE_CHECKING

from nas.cli._common import add_device_options, add_json_option, print_json
from nas.errors import ConfigError

if TYPE_CHECKING:
    from nas.hardware._profile import HardwareProfile

DEFAULT_TASK = "xray"
NOISE_REPEATS = 5

EXAMPLES = """examples:
  nas calibrate                                  # every profile with a spec sheet
  nas calibrate --hardware jetson-orin-agx
  nas calibrate --hardware jetson-orin-nano --json
  nas calibrate --hardware cpu --measure 40 --holdout 30          # fit a predictor on this CPU's own timings
  nas calibrate --hardware jetson-orin-nano --measure 40 --holdout 20 \\
      --device-url http://jetson:8765 --device-token-file token
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
    g = p.add_argument_group("a latency predictor fitted on the device's own measurements")
    g.add_argument("--measure", type=int, metavar="N", help="measure N candidates of the space on the profile's "
                                                            "target and fit the predictor on them")
    g.add_argument("--holdout", type=int, metavar="M", help="measure M further candidates and report how well the "
                                                            "fit predicts them")
    g.add_argument("--space", help=f"search space to draw candidates from (default: the {DEFAULT_TASK} task's)")
    g.add_argument("--image-size", type=int, default=28, metavar="PX",
                   help="the images' size: input sizes above it are not drawn, as in a search (default: 28, MedMNIST)")
    g.add_argument("--precision", help="precision to fit (default: the profile's first)")
    g.add_argument("--runtime", help="runtime to fit (default: the profile's first)")
    g.add_argument("--noise-repeats", type=int, default=NOISE_REPEATS, metavar="K",
                   help=f"held-out candidates timed twice for the noise ceiling (default: {NOISE_REPEATS})")
    g.add_argument("--sessions", type=int, metavar="S",
                   help="time each candidate in S fresh processes and keep the fastest (default: the profile's "
                        "protocol.sessions): on a small VM one process's memory layout can move a p50 by 1.5-2x, "
                        "more than the predictor's tolerance")
    g.add_argument("--seed", type=int, default=0, help="seed of the candidates drawn (default: 0)")
    g.add_argument("--results", type=Path, default=Path("results"),
                   help="results root; the fit goes to <results>/calibration/ (default: results/)")
    add_device_options(p)
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

    if args.measure is not None or args.holdout is not None:
        return run_measured(args)

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


def run_measured(args: argparse.Namespace) -> int:
    """Measure candidates on the profile's target, fit the predictor, judge it on held-out ones, and save it."""
    from nas.hardware import load_profile, open_target
    from nas.hardware.predictor import predictor_path
    from nas.hardware.runtime_choice import deployable_runtimes
    from nas.search.calibration import calibrate_on_device
    from nas.spaces import for_data, load_space
    from nas.tasks import get_task

    if args.measure is None or args.holdout is None or not args.hardware:
        raise ConfigError("a measured calibration needs --hardware, --measure N and --holdout M together, e.g. "
                          "nas calibrate --hardware cpu --measure 40 --holdout 30")
    if args.allow_estimate:
        raise ConfigError("--allow-estimate cannot be used with --measure: the predictor is fitted on measurements "
                          "of the device; start the agent on it and pass --device-url")
    if args.noise_repeats < 0:
        raise ConfigError(f"--noise-repeats must be 0 or more, got {args.noise_repeats}")
    profile = load_profile(args.hardware)
    if args.sessions is not None:
        if args.sessions < 1:
            raise ConfigError(f"--sessions must be 1 or more, got {args.sessions}")
        profile = profile.model_copy(update={"protocol": profile.protocol.model_copy(
            update={"sessions": args.sessions})})
    precision = args.precision or profile.precisions[0]
    if precision not in profile.precisions:
        raise ConfigError(f"--precision {precision} is not one of profile {profile.name!r}'s precisions: "
                          f"{', '.join(profile.precisions)}")
    target = open_target(profile, device_url=args.device_url, token_file=args.device_token_file,
                         ca_file=args.device_ca_file, any_device=args.any_device)
    runtimes = deployable_runtimes(target)
    runtime = args.runtime or runtimes[0]
    if runtime not in runtimes:
        raise ConfigError(f"--runtime {runtime} is not one profile {profile.name!r} can measure with here; "
                          f"runtimes: {', '.join(runtimes)}")
    # Every candidate is timed at --precision, whatever the space's own quant choices (sample_specs sets it).
    space = for_data(load_space(args.space or get_task(DEFAULT_TASK).default_space), (args.image_size, args.image_size))
    result = calibrate_on_device(target, space, measure=args.measure, holdout=args.holdout, seed=args.seed,
                                 precision=precision, runtime=runtime, noise_repeats=args.noise_repeats,
                                 image_size=args.image_size)
    path = result.predictor.save(predictor_path(args.results, profile.name, runtime, precision))
    document = result.document(path)
    if args.json:
        print_json(document)
    else:
        _print_measured(document)
    return 0


def _print_measured(doc: dict) -> None:
    score, noise = doc["holdout_score"], doc["noise_ceiling"]
    print(f"{doc['hardware']}: latency predictor fitted on {doc['measured']} candidates of {doc['space']} measured "
          f"with {doc['runtime_version']} {doc['precision']} on {doc['device']} ({doc['threads']} threads, batch "
          f"{doc['batch']}, the fastest of {doc['sessions']} process(es) each), judged on {doc['holdout']} held "
          "out\n")
    print(f"{'name':<5} {'role':<8} {'measured ms':>11} {'predicted ms':>12} {'error':>8} {'again ms':>9}  candidate")
    for c in doc["candidates"]:
        again = f"{c['remeasured_ms']:>9.4f}" if c["remeasured_ms"] is not None else f"{'':>9}"
        print(f"{c['name']:<5} {c['role']:<8} {c['measured_ms']:>11.4f} {c['predicted_ms']:>12.4f} "
              f"{c['relative_error']:>+8.1%} {again}  {c['summary']}")
    ceiling = (f"{noise['within_10pct']:.0%} of {noise['pairs']} models timed twice agree within +-10% (median "
               f"difference {noise['median_abs_difference']:.1%})") if noise["pairs"] else "not measured"
    rho = "undefined" if score["spearman"] is None else f"{score['spearman']:.3f}"
    print(f"\nheld out: {score['within_10pct']:.0%} within +-10%, median abs error {score['median_abs_error']:.1%}, "
          f"Spearman {rho}")
    print(f"noise ceiling: {ceiling}")
    print(f"saved: {doc['predictor']}")
