"""Shared fixtures: the quick measurement profile, the tiny search space, and the JSON Schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = REPO.parent / "shared"
QUICK_PROFILE = FIXTURES / "cpu-quick.yaml"
BUNDLED_XRAY = REPO / "nas" / "data" / "bundled" / "pneumoniamnist.npz"
SMALL_SPLITS = {"train": 1200, "val": 300, "test": 300}
TINY_SPLITS = {"train": 400, "val": 150, "test": 150}


def _small_xray(splits: dict[str, int] = SMALL_SPLITS, name: str = "pneumoniamnist-small") -> Path:
    """A class-stratified slice of the bundled PneumoniaMNIST (`splits`), written once per machine.

    Searches that test plumbing (resume, workers, rungs, reports) train on it: a quarter of the training split cuts
    the suite's time by minutes, and no such test depends on how accurate the models get.
    """
    import tempfile

    import numpy as np

    path = Path(tempfile.gettempdir()) / f"nas-tests-{BUNDLED_XRAY.stat().st_size}" / f"{name}.npz"
    if path.exists():
        return path
    out = {}
    with np.load(BUNDLED_XRAY) as z:
        for split, n in splits.items():
            images, labels = z[f"{split}_images"], z[f"{split}_labels"]
            rng = np.random.default_rng(0)
            keep = np.sort(np.concatenate([  # each class in its split's proportion
                rng.choice(np.flatnonzero(labels[:, 0] == c), round(n * np.mean(labels[:, 0] == c)), replace=False)
                for c in np.unique(labels)]))
            out[f"{split}_images"], out[f"{split}_labels"] = images[keep], labels[keep]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    with open(partial, "wb") as handle:
        np.savez(handle, **out)
    partial.replace(path)
    return path


SMALL_XRAY = _small_xray()
TINY_XRAY = _small_xray(TINY_SPLITS, "pneumoniamnist-tiny")
"""A third of SMALL_XRAY, for searches whose many trials test only the search's own rules (rungs, promotion)."""


def shared_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder `make` fills once per test run, however many pytest-xdist processes ask for it: a session
    fixture alone runs once per process, and the suite's costliest fixtures (a search and its export) would run
    twice. The others wait on a file lock and read what the first wrote."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, shared by its workers
    folder = base / name
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".made").touch()
    return folder


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


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL cluster on a loopback port, started for the tests and stopped after them.

    Needs the server binaries (Debian's `postgresql`, which .ci/run installs). initdb refuses to run as root,
    so as root the cluster runs as the `postgres` system user that the package creates.
    """
    import shutil
    import socket
    import tempfile

    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; .ci/run does this)")
    data = Path(tempfile.mkdtemp(prefix="nas-pg-"))  # not under pytest's root-only tmp, which postgres can't enter
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        data.chmod(0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "nas")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "start",
        "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "nas", "nas")
        yield f"postgresql://nas@127.0.0.1:{port}/nas"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)
