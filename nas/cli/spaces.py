"""`nas spaces`: the search spaces that can be named with --space."""

from __future__ import annotations

import argparse

from nas.cli._common import add_json_option, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list search spaces", description="List the search spaces in search_spaces/.")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.spaces.catalog import list_space_summaries

    spaces = list_space_summaries()
    if args.json:
        print_json([{"name": s.name, "task": s.task, "families": list(s.families), "baselines": list(s.baselines),
                     "description": s.description, "path": str(s.path)} for s in spaces])
        return 0
    for s in spaces:
        print(f"{s.name:<14} task={s.task:<7} families={','.join(s.families):<30} {s.description}")
    return 0
