"""`nas report`: regenerate a study's report.html from its stored results, for any two objectives."""

from __future__ import annotations

import argparse

from pathlib import Path

from nas.cli._common import add_study_options, err

EPILOG = """examples:
  nas report --study xray-cpu
  nas report --study xray-cpu --x params --y sensitivity
  nas report --study xray-cpu --results /mnt/other-machine/results
  nas report --study xray-cpu --remeasure     # time the front again, rewriting pareto.json

Works on a finished study, a running one (front from search-time numbers, marked as such) or a copied folder."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write a study's HTML report", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write results/<study>/report.html (self-contained, opens offline) from pareto.json and the "
                    "trial records: every trial, the front, baselines, knee, constraints and convergence.",
    )
    add_study_options(p, study_required=True)  # the storage is read only with --remeasure
    p.add_argument("--x", help="objective across (default: the study's first minimised one); `nas tasks` lists "
                               "each task's objectives")
    p.add_argument("--y", help="objective up (default: the study's first maximised one)")
    p.add_argument("--remeasure", action="store_true",
                   help="re-measure the front and baselines in one session and rewrite pareto.json first (a "
                        "finished study's front changes only this way)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.report.html import study_dir, write_report

    if args.remeasure:
        from nas.search.final import finalize
        from nas.search.runner import config_from_study, prepare
        from nas.search.study import storage_url

        url = storage_url(args.storage, Path(args.results), args.study)
        config = config_from_study(args.study, url, results=Path(args.results), worker=0, progress=False)
        doc = finalize(prepare(config), keep_artifacts=config.keep_artifacts, log=err)
        err(f"re-measured: {doc['remeasured']['members_after']} member(s) on the front")
    path = write_report(study_dir(args.results, args.study), x=args.x, y=args.y)
    print(f"report: {path}")
    return 0
