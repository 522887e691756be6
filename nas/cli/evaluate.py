"""`nas evaluate`: an export's deployed file audited on a labelled split, overall and per patient group."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli._common import add_json_option, print_json
from nas.defaults import EVALUATE_MARGIN

EPILOG = """examples:
  nas evaluate --model shipped/xray-7 --data /data/chest_xray_224
  nas evaluate --model shipped/xray-7 --data /data/chest_xray_224 --groups groups.csv --margin 0.05
  nas evaluate --model shipped/xray-7 --data pneumoniamnist.npz --split val --json

--groups is a CSV with a header `input,group`; an input is the image's path relative to the data root
(test/PNEUMONIA/person1_virus_6.jpeg), or <split>/<index> for an .npz. benchmarks/make_pneumonia_groups.py writes
one (normal / bacterial / viral) for the chest X-ray folder."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="audit an exported model on labelled data", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run an export's deployed file (with io.json's pre-processing, calibration, threshold and "
                    "referral band) on a split of a data set: AUC, sensitivity and specificity with 95% bootstrap "
                    "intervals, calibration error, referral figures, and per-group figures with flags.",
    )
    p.add_argument("--model", type=Path, required=True, help="the folder `nas export` wrote")
    p.add_argument("--data", required=True, help="an .npz file or an image folder (train/ val/ test/)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="default: test")
    p.add_argument("--groups", type=Path, help="CSV `input,group`: figures per group, flagging trailing ones")
    p.add_argument("--margin", type=float, default=EVALUATE_MARGIN,
                   help="flag a group whose sensitivity trails the rest, or a figure off the export's own target, by more "
                        "than this (default %(default)s)")
    p.add_argument("--positive-class", help="the data's name for the model's positive class (default: io.json's "
                                            "positive_class, matched ignoring case)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.clinical.evaluate import evaluate_export, summary

    doc = evaluate_export(args.model, args.data, split=args.split, groups=args.groups, margin=args.margin,
                          positive_class=args.positive_class)
    if args.json:
        print_json(doc)
    else:
        print("\n".join(summary(doc)))
    return 0
