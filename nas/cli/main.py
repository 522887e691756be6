"""Entry point: dispatch to a verb, and the one place that turns errors into messages and exit codes.

Building the parser imports every verb's module, so those import only the standard library and `nas.defaults`
at the top; torch, Optuna and ONNX load inside the `run` of the verbs that use them (tests/cli/test_main.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from nas import __version__
from nas.cli._common import mask_secrets
from nas.errors import NasError


# One module per verb under nas/cli/, each with register(subparsers); listed here in `nas --help` order.
VERBS = ("search", "worker", "export", "spaces", "tasks", "profiles", "measure", "calibrate", "agent", "report", "pick",
         "dashboard", "predict", "evaluate", "monitor", "detect")
OPTUNA_VERBS = ("search", "worker", "dashboard")
"""Verbs that drive a study: Optuna's per-trial INFO lines are silenced for them (the progress line says more)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped examples, and appends `(default: X)` to every option whose help does not state it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.default in (None, False, True, argparse.SUPPRESS) or not action.option_strings
                or "default" in text):
            return action.help
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Hardware-aware neural architecture search for medical imaging."
    )
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (or set NAS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERBS:
        importlib.import_module(f"nas.cli.{name}").register(sub)
    for verb_parser in sub.choices.values():
        verb_parser.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv) or os.environ.get("NAS_DEBUG") == "1"
    if not debug:  # library deprecation notices are for developers, not for users reading a search's progress
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in OPTUNA_VERBS:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, stream=sys.stderr, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except NasError as exc:
        if debug:
            raise
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
