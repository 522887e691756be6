"""The remote client's retries, against a real HTTP server on loopback that fails on a script.

Network errors (a dropped connection, nothing listening) and 5xx answers are retried `retries` times with a short
back-off; a 4xx answer is about the model and is not; after the last try the trial fails naming the last error.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import QUICK_PROFILE
from nas.errors import TrialError
from nas.hardware import load_profile
from nas.hardware.remote import SETTINGS_HEADER, measure_remote, request_measurement

INPUT_SHAPE = (1, 16, 16)
MEASUREMENT = {
    "p50_ms": 1.5, "p95_ms": 1.7, "p99_ms": 1.9, "mean_ms": 1.6, "cv": 0.02, "runs": 100, "seconds": 0.2,
    "throughput_ips": 900.0, "throughput_batch": 8, "peak_memory_mb": 3.0, "model_bytes": 5, "backend": "onnxruntime",
    "runtime_version": "1.0", "device": "flaky test server", "precision": "fp32", "batch": 1, "threads": None,
    "method": "remote", "load_avg": 0.0,
}


class FlakyServer(ThreadingHTTPServer):
    """Answers POST /measure by a script of "drop" (close without answering), an HTTP status, or "ok"."""

    def __init__(self, script: list[str]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FlakyServer

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        self.rfile.read(int(self.headers["Content-Length"]))
        assert json.loads(self.headers[SETTINGS_HEADER])["precision"] == "fp32"
        step = self.server.script.pop(0) if self.server.script else "ok"
        self.server.seen.append(step)
        if step == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status = 200 if step == "ok" else int(step)
        body = json.dumps({"measurement": MEASUREMENT, "cached": False} if status == 200
                          else {"detail": f"scripted {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _serve(script: list[str]) -> Iterator[FlakyServer]:
    server = FlakyServer(script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"bytes")  # the flaky server never parses it
    return path


@pytest.fixture(scope="module")
def profile():
    return load_profile(str(QUICK_PROFILE))


@pytest.mark.parametrize("script", [["503", "drop"], ["drop", "502"], ["500", "500"]])
def test_network_errors_and_5xx_are_retried_until_an_answer(script, model, profile):
    with _serve(script) as server:
        started = time.monotonic()
        m = measure_remote(server.url, None, model, profile, "fp32", INPUT_SHAPE, retries=2)
        assert server.seen == [*script, "ok"]
        assert m.p50_ms == 1.5 and m.method == "remote"
        assert time.monotonic() - started < 10  # back-off 0.5 s, then 1 s: bounded


def test_the_last_failure_is_named_after_the_retries_run_out(model, profile):
    with _serve(["503", "drop", "504", "ok"]) as server:
        with pytest.raises(TrialError, match=r"failed 3 times.*last: HTTP 504: scripted 504"):
            request_measurement(server.url, None, model, profile, "fp32", INPUT_SHAPE, retries=2)
        assert server.seen == ["503", "drop", "504"]  # three tries, the fourth answer never asked for


def test_a_4xx_answer_is_not_retried(model, profile):
    with _serve(["422", "ok"]) as server:
        with pytest.raises(TrialError, match=r"refused .*HTTP 422.*scripted 422"):
            request_measurement(server.url, None, model, profile, "fp32", INPUT_SHAPE, retries=2)
        assert server.seen == ["422"]


def test_nothing_listening_is_retried_then_fails_the_trial(model, profile):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the client connects: connection refused
    started = time.monotonic()
    with pytest.raises(TrialError, match=r"failed 2 times.*last: ConnectError"):
        request_measurement(f"http://127.0.0.1:{port}", None, model, profile, "fp32", INPUT_SHAPE, retries=1)
    assert 0.4 < time.monotonic() - started < 10  # one back-off of 0.5 s between the two tries
