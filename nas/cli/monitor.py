"""`nas monitor`: a shadow-mode log as agreement, referral, latency and drift, overall and over time."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli._common import add_json_option, err, print_json
from nas.defaults import DEFAULT_WINDOW

EXIT_TAMPERED = 4

EPILOG = """examples:
  nas monitor results/shadow/ward-a.db
  nas monitor results/shadow/ward-a.db --window 200 --out ward-a.html
  nas monitor results/shadow/ward-a.db --json

The log is written by `nas predict --labels reads.csv --log results/shadow/ward-a.db`. Its rows are hash-chained:
when a row no longer matches its hash (changed or removed by hand), the figures are still shown, the break is
named, and the exit code is 4."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor", help="report on a shadow-mode log", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Agreement with the radiologists (Cohen's kappa), sensitivity, specificity, referral rate and "
                    "p50/p95/p99 latency, overall and per window of N predictions, and a warning when the latest "
                    "window's scores drift from validation's (PSI > 0.2). Writes a self-contained HTML page.",
    )
    p.add_argument("log", type=Path, help="the shadow log (SQLite) `nas predict --log` writes")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help="predictions per window, and the latest ones judged for drift (default %(default)s)")
    p.add_argument("--out", type=Path, help="HTML page to write (default: the log's path with .html)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.clinical.monitor import monitor_log, summary, write_page

    doc = monitor_log(args.log, args.window)
    page = write_page(doc, args.out or args.log.with_suffix(".html"))
    if args.json:
        print_json({**doc, "page": str(page)})
    else:
        print("\n".join(summary(doc)))
        print(f"page: {page}")
    integrity = doc["integrity"]
    if integrity["status"] != "verified":
        err(f"warning: {args.log}: {integrity['message']}")
    return EXIT_TAMPERED if integrity["status"] == "broken" else 0
