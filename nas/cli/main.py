"""Entry point: dispatch to a verb, and the one place that turns errors into messages and exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from nas import __version__
from nas.errors import NasError


# One module per verb under nas/cli/, each with register(subparsers); listed here in `nas --help` order.
VERBS = ("search", "worker", "export", "spaces", "tasks", "profiles", "measure", "calibrate", "agent", "report", "pick",
         "dashboard", "predict", "evaluate", "monitor", "detect")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Hardware-aware neural architecture search for medical imaging."
    )
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (or set NAS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERBS:
        importlib.import_module(f"nas.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv) or os.environ.get("NAS_DEBUG") == "1"
    if not debug:  # library deprecation notices are for developers, not for users reading a search's progress
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, stream=sys.stderr, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except NasError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
