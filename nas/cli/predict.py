"""`nas predict`: score PNG / JPEG / DICOM files with an exported model (calibrated score, decision, referral)."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas._io import atomic_write_text, write_json
from nas.cli._common import add_json_option, err, print_json
from nas.errors import ConfigError

if TYPE_CHECKING:
    from nas.clinical.predict import DeployedModel, Prediction

EXIT_SOME_FAILED = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="score images with an exported model", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score PNG, JPEG and DICOM files (or folders of them, searched recursively) with the model in an "
                    "export folder: calibrated score, decision at the exported threshold, and whether the case "
                    "falls in the referral band. Pre-processing comes from the export's io.json. An input that "
                    f"cannot be used gets an error row; the exit code is then {EXIT_SOME_FAILED}.",
        epilog="examples:\n  nas predict --model shipped/xray-7 scans/ --out predictions.csv\n"
               "  nas predict --model shipped/xray-7 chest.dcm --heatmaps heatmaps/ --json\n"
               "  nas predict --model shipped/xray-7 scans/ --labels reads.csv --log shadow.db",
    )
    p.add_argument("--model", type=Path, required=True, help="folder written by `nas export`")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    p.add_argument("--out", type=Path, help="write the rows to FILE.csv or FILE.json")
    p.add_argument("--heatmaps", type=Path, metavar="DIR", help="write a Grad-CAM overlay PNG per input here")
    p.add_argument("--labels", type=Path, help="CSV with columns input,label (1 abnormal, 0 normal): "
                   "the readers' labels to log beside the predictions (needs --log)")
    p.add_argument("--log", type=Path, help="shadow-mode log (SQLite) to append every prediction to")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.labels and not args.log:
        raise ConfigError("--labels needs --log: labels are written to the shadow log beside the predictions")
    if args.out and args.out.suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"--out {args.out}: give a .csv or .json file name")
    from nas.clinical.predict import DeployedModel, predict

    model = DeployedModel.load(args.model)
    labels = None
    if args.labels:
        from nas.clinical.shadow import read_labels

        labels = read_labels(args.labels)
    predictions = predict(model, args.inputs, heatmaps=args.heatmaps)
    doc = _document(model, predictions)
    if args.out:  # before the log, so a log that refuses the rows does not cost them
        if args.out.suffix.lower() == ".json":
            write_json(args.out, doc)
        else:
            atomic_write_text(args.out, _csv(predictions))
    if args.log:
        from nas.clinical.shadow import append_predictions

        written = append_predictions(args.log, [p.row() for p in predictions if p.error is None], labels,
                                     model_dir=args.model)
        err(f"logged {written} prediction(s) to {args.log}")
    failed = doc["failed"]
    if args.json:
        print_json(doc)
    else:
        print(_csv(predictions, delimiter="\t"), end="")  # the CSV's columns and values, tab-separated
        err(f"{len(predictions) - failed} scored, {failed} failed" + (f"; rows in {args.out}" if args.out else ""))
    return EXIT_SOME_FAILED if failed else 0


def _document(model: DeployedModel, predictions: list[Prediction]) -> dict[str, Any]:
    io_json = model.io
    return {
        "schema_version": 1, "model": str(model.folder), "file": io_json["file"], "precision": io_json["precision"],
        "positive_class": io_json.get("positive_class"), "temperature": model.temperature,
        "threshold": model.threshold, "referral_band": list(model.band),
        "predictions": [p.row() for p in predictions], "failed": sum(p.error is not None for p in predictions),
    }


def _csv(predictions: list[Prediction], delimiter: str = ",") -> str:
    from nas.clinical.predict import ROW_FIELDS

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS, lineterminator="\n", delimiter=delimiter)
    writer.writeheader()
    writer.writerows(p.row() for p in predictions)
    return buffer.getvalue()
