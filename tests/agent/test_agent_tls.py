"""The agent over TLS: `nas agent --ssl-certfile/--ssl-keyfile`, and the client trusting it with `--device-ca-file`.

The certificate is self-signed and made here with the `openssl` command (for 127.0.0.1), so the client trusts it
only when handed the file: the same situation as a Jetson on a clinic's network with its own certificate.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from conftest import QUICK_PROFILE, REPO, run_nas
from nas.errors import ConfigError
from nas.export import to_onnx
from nas.hardware import load_profile
from nas.hardware.remote import agent_info, measure_remote
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

TOKEN = "tls-test-token-0123456789"
SPEC = Spec(
    family="dsconv", input_size=16, in_channels=1, num_classes=2,
    arch={"stem_width": 8, "stem_stride": 2, "se": False, "activation": "relu", "dropout": 0.0,
          "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}]},
    training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0),
)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (subjectAltName, which hostname checking reads) and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate (apt-get install openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=nas-test-agent", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_agent(tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:
    """`nas agent` serving HTTPS on a free loopback port; yields its URL, the CA (its own cert) and the token file."""
    import socket

    folder = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(folder)
    (folder / "token").write_text(TOKEN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    log = folder / "agent.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "nas.cli.main", "agent", "--port", str(port), "--token-file",
                                 str(folder / "token"), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"the agent exited: {log.read_text()}"
            try:
                if httpx.get(f"{url}/health", verify=trusted).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the agent did not answer /health in 90 s: {log.read_text()}"
            time.sleep(0.2)
        assert f"at {url}" in log.read_text()  # the start-up line names the https:// address
        yield url, cert, folder / "token"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return to_onnx(create_model(SPEC), tuple(SPEC.input_shape), tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_measured_over_https_when_the_ca_file_is_given(tls_agent, model):
    url, cert, _ = tls_agent
    assert agent_info(url, TOKEN, ca_file=str(cert))["runtimes"]
    m = measure_remote(url, TOKEN, model, load_profile(str(QUICK_PROFILE)), "fp32", tuple(SPEC.input_shape),
                       ca_file=str(cert))
    assert m.method == "remote" and m.p50_ms > 0


def test_an_untrusted_certificate_is_refused_naming_the_option(tls_agent):
    url, _, _ = tls_agent
    with pytest.raises(ConfigError, match="not trusted.*--device-ca-file"):
        agent_info(url, TOKEN)


def test_plain_http_to_the_tls_agent_does_not_get_an_answer(tls_agent):
    url, cert, _ = tls_agent
    with pytest.raises(ConfigError, match="cannot reach|does not answer|stopped answering"):
        agent_info(url.replace("https://", "http://"), TOKEN)
    with pytest.raises(ConfigError, match="not https://"):
        agent_info(url.replace("https://", "http://"), TOKEN, ca_file=str(cert))


def test_nas_measure_through_the_tls_agent(tls_agent, model, tmp_path):
    url, cert, token_file = tls_agent
    proc = run_nas("measure", str(model), "--hardware", str(QUICK_PROFILE), "--device-url", url,
                   "--device-token-file", str(token_file), "--device-ca-file", str(cert), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)["measurement"]
    assert record["method"] == "remote" and record["backend"] == "onnxruntime" and record["p50_ms"] > 0
    refused = run_nas("measure", str(model), "--hardware", str(QUICK_PROFILE), "--device-url", url,
                      "--device-token-file", str(token_file), cwd=tmp_path)
    assert refused.returncode == 2 and "--device-ca-file" in refused.stderr
