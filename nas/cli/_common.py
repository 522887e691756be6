"""Options shared by every verb that reads a study, and the one JSON printer."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from pathlib import Path
from typing import Any

from nas.errors import shown

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
STUDY_NAME_RULE = "a letter or digit, then up to 99 letters, digits, '.', '_' or '-'"
_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^\s/]*@", re.IGNORECASE)


def study_name(value: str) -> str:
    """A --study value is one folder under --results: no `..`, no absolute path, nothing a shell or a file system
    would read specially, so a study's files can never be written outside the results root."""
    if not STUDY_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(f"study name {shown(value)} is not allowed; use {STUDY_NAME_RULE} "
                                         f"(pattern {STUDY_NAME.pattern})")
    return value


def mask_secrets(text: str) -> str:
    """Database URLs with their password shown as *** (postgresql://nas:***@host/db), for anything printed."""
    return _PASSWORD.sub(r"\1***@", text)


def add_study_options(parser: argparse.ArgumentParser, *, study_required: bool, storage: bool = True) -> None:
    parser.add_argument("--study", required=study_required, type=study_name,
                        help="study name" if study_required else "study name (default: <task>-<hardware>)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root (default: results/)")
    if storage:
        parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<results>/<study>/study.db)")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def err(message: str) -> None:
    print(mask_secrets(message), file=sys.stderr)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Where latencies are taken when the profile's device is not this machine (settled point 5)."""
    parser.add_argument("--device-url", help="a `nas agent` on the target device, e.g. http://jetson:8765")
    parser.add_argument("--device-token-file", help="file holding the agent's token")
    parser.add_argument("--device-ca-file", help="CA certificate to trust for an https:// agent")
    parser.add_argument("--any-device", action="store_true",
                        help="measure on the agent even when its device does not match the profile (recorded)")
    parser.add_argument("--allow-estimate", action="store_true",
                        help="without a reachable device, use the profile's calibrated estimate (labelled)")


def is_loopback(host: str) -> bool:
    """Only this machine can connect: what lets a service run without authentication."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to a public address
        return False
