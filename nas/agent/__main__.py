"""`python -m nas.agent [options]`: the agent without the `nas` entry point, same options as `nas agent`."""

from __future__ import annotations

import argparse
import sys

from nas.cli import agent
from nas.errors import NasError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nas")  # help then shows the `nas agent` it stands for
    agent.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["agent", *(sys.argv[1:] if argv is None else argv)])
    try:
        return agent.run(args)
    except NasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
