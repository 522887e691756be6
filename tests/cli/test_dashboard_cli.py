"""`nas dashboard`: optuna-dashboard served on a real study's storage, and the errors around it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import QUICK_PROFILE, REPO, run_nas
from nas.cli._common import is_loopback
from nas.cli.main import main

# The dashboard is on loopback: never route the test's requests through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A real study 'd' made by `nas search` with no trial run (--timeout 0): created, nothing trained."""
    root = tmp_path_factory.mktemp("dashboard")
    proc = run_nas("search", "--space", "xray-tiny", "--hardware", str(QUICK_PROFILE), "--study", "d",
                   "--trials", "1", "--timeout", "0", "--results", str(root / "results"), cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return root / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    with OPENER.open(url, timeout=5) as response:  # follows the / -> /dashboard redirect
        return response.status, response.read().decode()


@pytest.mark.slow
def test_dashboard_serves_the_study(results, tmp_path):
    port = free_port()
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.cli.main", "dashboard", "--study", "d", "--results", str(results),
         "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            try:
                status, page = get(f"http://127.0.0.1:{port}/")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.3)
        assert status == 200
        assert "<title>Optuna Dashboard</title>" in page
        status, body = get(f"http://127.0.0.1:{port}/api/studies")
        assert status == 200
        assert [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["d"]
        proc.terminate()  # SIGTERM (SIGINT may be ignored where the tests run in the background)
        assert proc.wait(timeout=15) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in stderr
    assert "no authentication" not in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_unknown_study_lists_the_existing_ones(results, tmp_path, capsys):
    proc = run_nas("dashboard", "--study", "e", "--results", str(results), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"error: no study 'e' under {results}/; studies there: d\n"
    assert not (results / "e").exists()  # nothing created for a study that is not there
    # With --storage, the studies listed are the storage's (in-process: the exit code and message are main()'s).
    assert main(["dashboard", "--study", "e", "--storage", f"sqlite:///{results / 'd' / 'study.db'}"]) == 2
    assert capsys.readouterr().err == "error: unknown study 'e'; valid: d\n"


@pytest.mark.slow
def test_public_host_warns_and_an_unusable_address_is_an_error(results, tmp_path):
    # 192.0.2.1 (TEST-NET-1) is not this machine's, so the bind fails and nothing is ever exposed.
    proc = run_nas("dashboard", "--study", "d", "--results", str(results), "--host", "192.0.2.1",
                   "--port", str(free_port()), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "warning: the dashboard has no authentication" in proc.stderr
    assert "error: cannot listen on 192.0.2.1:" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_package_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # makes `import optuna_dashboard` fail
    assert main(["dashboard", "--study", "d", "--results", str(tmp_path)]) == 2
    assert "pip install optuna-dashboard" in capsys.readouterr().err


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("dashboard.example.org", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback
