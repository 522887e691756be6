"""Shared fixtures: the quick measurement profile, the tiny search space, and the JSON Schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = REPO.parent / "shared"
QUICK_PROFILE = FIXTURES / "cpu-quick.yaml"


@pytest.fixture(scope="session")
def quick_profile() -> Path:
    return QUICK_PROFILE


def schema(name: str) -> dict:
    """The output contract, from ../shared/schemas (the source of truth) or the copy kept in tests/schemas."""
    for folder in (SHARED / "schemas", Path(__file__).resolve().parent / "schemas"):
        if (folder / name).exists():
            return json.loads((folder / name).read_text())
    raise FileNotFoundError(f"schema {name} not found in ../shared/schemas or tests/schemas")


def run_nas(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a separate process, so exit codes and stdout/stderr are real."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nas.cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
