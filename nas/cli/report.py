"""`nas report`: regenerate a study's report.html from its stored results, for any two objectives."""

from __future__ import annotations

import argparse

from nas.cli._common import add_study_options
from nas.search.objectives import OBJECTIVES

EPILOG = """examples:
  nas report --study xray-cpu
  nas report --study xray-cpu --x params --y sensitivity
  nas report --study xray-cpu --results /mnt/other-machine/results

Works on a finished study, a running one (front from search-time numbers, marked as such) or a copied folder."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write a study's HTML report", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write results/<study>/report.html (self-contained, opens offline) from pareto.json and the "
                    "trial records: every trial, the front, baselines, knee, constraints and convergence.",
    )
    add_study_options(p, study_required=True, storage=False)  # reads the study's files only
    names = ", ".join(OBJECTIVES.names())
    p.add_argument("--x", help=f"objective across (default: the study's first minimised one); one of {names}")
    p.add_argument("--y", help="objective up (default: the study's first maximised one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.report.html import study_dir, write_report

    path = write_report(study_dir(args.results, args.study), x=args.x, y=args.y)
    print(f"report: {path}")
    return 0
