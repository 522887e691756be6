"""`nas tasks`: the tasks that can be named with --task."""

from __future__ import annotations

import argparse

from nas.cli._common import add_json_option, err, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list tasks", description="List the registered tasks (--task).")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.tasks import OBJECTIVES, get_task, list_tasks

    tasks = [get_task(name) for name in list_tasks()]
    if args.json:
        print_json([{"name": t.name, "default_space": t.default_space, "objectives": list(t.default_objectives),
                     "description": t.description} for t in tasks])
        return 0
    for t in tasks:
        print(f"{t.name:<18} space={t.default_space:<18} objectives={','.join(t.default_objectives):<18} "
              f"{t.description}")
    err(f"--objectives may name any of: {', '.join(OBJECTIVES.names())}")
    return 0
