"""`nas export`: ship one trial as ONNX + spec + weights + model card, verified against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli._common import add_json_option, add_study_options, err, print_json
from nas.defaults import EXPORT_FORMATS, INT8_MAX_AUC_DROP, REFER_RATE
from nas.hardware.sessions import RUNTIMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a trial's model", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export one trial as a deployable folder, checking the ONNX output against PyTorch.",
        epilog="examples:\n  nas export --study xray-cpu --trial 7 --out shipped/xray-7\n"
               "  nas export --study xray-cpu --trial 7 --out shipped/xray-7-int8 --format int8\n"
               "  nas export --study xray-cpu --trial 7 --out shipped/xray-7-ort --runtime onnxruntime",
    )
    add_study_options(p, study_required=True, storage=False)  # reads the trial's files only
    p.add_argument("--trial", type=int, required=True, help="trial number (see pareto.json or the report)")
    p.add_argument("--out", type=Path, required=True, help="folder to write model.onnx, spec.json, model card")
    p.add_argument("--data", help="the study's data, when it sits at another path on this machine")
    p.add_argument("--format", dest="fmt", default=None, choices=EXPORT_FORMATS,
                   help="onnx (fp32), int8 (ONNX Runtime static QDQ, calibrated on training images), tensorrt")
    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="ship for this runtime instead of the one the search chose for the trial (default: the "
                        "search's choice, see `nas pick`), e.g. where the clinic's server has no OpenVINO")
    p.add_argument("--max-auc-drop", type=float, default=INT8_MAX_AUC_DROP,
                   help="fail when the deployed file loses more validation AUC than this (default %(default)s)")
    p.add_argument("--refer-rate", type=float, default=REFER_RATE,
                   help="fraction of validation cases, the least certain ones, whose score band `nas predict` "
                        "marks for a reader (default %(default)s)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.report.package import export_trial, open_trial, study_task
    from nas.errors import ConfigError
    from nas.tasks import Task, get_task

    task = get_task(study_task(args.results, args.study))
    if args.runtime and type(task).export_bundle is not Task.export_bundle:
        raise ConfigError(f"--runtime: the {task.name} task's export ships ONNX files for ONNX Runtime only; "
                          "leave --runtime out")
    card = task.export_bundle(lambda: open_trial(args.results, args.study, args.trial, args.data), args.out)
    if card is not None:  # the task's own bundle (the nodule task: two stage models, a pipeline config, a card)
        if args.json:
            print_json(card)
        else:
            print(f"exported {task.name} trial {args.trial} of {args.study} to {args.out}/: {', '.join(card['files'])}")
        return 0
    card = export_trial(args.results, args.study, args.trial, args.out, data=args.data, fmt=args.fmt,
                        max_auc_drop=args.max_auc_drop, refer_rate=args.refer_rate, runtime=args.runtime)
    for warning in card["calibration"]["health"]["warnings"]:
        err(f"warning: {warning}")
    if args.json:
        print_json(card)
    else:
        err(f"ONNX matches PyTorch (class probabilities within {card['parity_max_abs_diff']:.1e})")
        ece, band = card["calibration"]["ece"]["val"], card["referral"]["band"]
        err(f"calibrated: temperature {card['calibration']['temperature']:.3f}, validation ECE {ece['before']:.3f} -> "
            f"{ece['after']:.3f}; referral band {band[0]:.3f}-{band[1]:.3f} "
            f"({card['referral']['test_referred']:.1%} of test referred)")
        print(f"exported trial {args.trial} of {args.study} to {args.out}/: {', '.join(card['files'])}")
    return 0
