"""`nas worker`: join an existing study and run its trials until the study's budget or this worker's own."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nas.cli._common import err, study_name
from nas.defaults import GRACE_PERIOD_S

EPILOG = """examples:
  nas worker --study xray-cpu --storage postgresql://nas@db.local/nas
  nas worker --study xray-cpu --storage postgresql://nas@db.local/nas --trials 5 --results /shared/results
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker", help="join a study and run its trials", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run trials of a study created by `nas search` (its settings are read from the storage). "
                    "Run as many as you like, on one machine or many, against one --storage and one --results "
                    "root (a shared filesystem when on several machines). `nas search --study S --storage URL` "
                    "afterwards writes the front and the report.",
    )
    p.add_argument("--study", required=True, type=study_name,
                   help="the study to join, as `nas search` named it (required)")
    p.add_argument("--storage", required=True, help="the study's storage URL (PostgreSQL for several machines)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root shared by the workers")
    p.add_argument("--trials", type=int, help="at most this many trials from this worker (default: until the study's budget)")
    p.add_argument("--timeout", type=float, help="seconds after which this worker starts no new trial (default: none)")
    p.add_argument("--data", help="the study's data, when it sits at another path on this machine")
    p.add_argument("--grace-period", type=float, default=GRACE_PERIOD_S,
                   help="seconds without a heartbeat before a running trial is failed and retried (default %(default)s)")
    p.add_argument("--threads", type=int, help="training threads (default: every core); split cores between workers")
    p.add_argument("--worker-id", type=int, default=None, help="distinct per worker; seeds its sampler (default: pid)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.search.runner import config_from_study, prepare, run_search

    config = config_from_study(
        args.study, args.storage, results=args.results, worker=args.worker_id or os.getpid(),
        max_new_trials=args.trials, timeout=args.timeout, data=args.data, grace_period=args.grace_period,
        progress=False, threads=args.threads,
    )
    run_ = prepare(config)
    err(f"worker {config.worker} joined study {args.study!r} (budget {config.trials} trials)")
    run_search(config, run_)
    if run_.interrupted:
        err(f"worker {config.worker} interrupted; its running trial was marked interrupted")
        return 130
    err(f"worker {config.worker} done: ran trials {run_.new_trials}")
    return 0
