"""`nas dashboard`: browse a study live in optuna-dashboard, on the study's own storage."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli._common import add_study_options, err, is_loopback
from nas.errors import NasError, StudyError

EPILOG = """examples:
  nas dashboard --study xray-cpu
  nas dashboard --study big --storage postgresql://nas@db/nas --port 8081

It serves every study in the storage and runs until Ctrl-C. It has no authentication: keep the default loopback
--host and reach it from another machine through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 host)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard", help="browse a study in optuna-dashboard", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start optuna-dashboard on the study's storage: trials, Pareto front, parameter importances "
                    "and history, updated while the search runs. Needs the optuna-dashboard package.",
    )
    add_study_options(p, study_required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import optuna_dashboard
    except ImportError:
        raise NasError("nas dashboard needs optuna-dashboard: pip install optuna-dashboard") from None
    from nas.report.html import study_dir
    from nas.search.study import load_existing, open_storage, storage_url

    if args.storage is None:  # the default SQLite file: refuse a missing study instead of creating an empty one
        folder = study_dir(Path(args.results), args.study)
        if not (folder / "study.db").exists():
            raise StudyError(f"{folder}/ has no study.db: the study {args.study!r} is stored elsewhere; pass its "
                             "--storage")
    url = storage_url(args.storage, Path(args.results), args.study)
    storage = open_storage(url)
    load_existing(args.study, storage)
    host = args.host.strip("[]")  # an IPv6 address may come in URL brackets
    if not is_loopback(host):
        err(f"warning: the dashboard has no authentication; anyone who can reach {host}:{args.port} can "
            "read and change the study's storage")
    study_id = storage.get_study_id_from_name(args.study)
    where = f"[{host}]" if ":" in host else host
    err(f"optuna-dashboard for study {args.study!r} ({url}): "
        f"http://{where}:{args.port}/dashboard/studies/{study_id} (Ctrl-C to stop)")
    try:
        optuna_dashboard.run_server(storage, host=host, port=args.port)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise NasError(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}") from None
    return 0
