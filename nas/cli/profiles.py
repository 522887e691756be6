"""`nas profiles`: the hardware profiles that can be named with --hardware."""

from __future__ import annotations

import argparse

from nas.cli._common import add_json_option, print_json
from nas.hardware import list_profiles


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="list hardware profiles",
                       description="List the hardware profiles in hardware_profiles/.")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    profiles = list_profiles()
    if args.json:
        print_json([{**p.model_dump(mode="json"), "path": str(p.path)} for p in profiles])
        return 0
    for p in profiles:
        aliases = f" (also: {', '.join(p.aliases)})" if p.aliases else ""
        print(f"{p.name:<18} {p.backend:<12} {','.join(p.precisions):<15} {p.description}{aliases}")
    return 0
