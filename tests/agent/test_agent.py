"""The measurement agent, started for real as a process, and its client: measurements, cache, queue, refusals."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from conftest import QUICK_PROFILE, REPO, SMALL_XRAY, run_nas
from nas.agent.app import LIMITS
from nas.errors import ConfigError, TrialError
from nas.export import to_onnx
from nas.hardware import load_profile, onnxruntime_cpu
from nas.hardware.device_info import local_device_info
from nas.hardware.remote import SETTINGS_HEADER, MeasureSettings, agent_info, measure_remote, request_measurement
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

TOKEN = "test-token-0123456789"
SPEC = Spec(
    family="dsconv", input_size=16, in_channels=1, num_classes=2,
    arch={"stem_width": 8, "stem_stride": 2, "se": False, "activation": "relu", "dropout": 0.0,
          "stages": [{"width": 16, "depth": 1, "stride": 2, "kernel": 3}]},
    training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0),
)
INPUT_SHAPE = tuple(SPEC.input_shape)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _running_agent(log: Path, *options: str) -> Iterator[str]:
    """`python -m nas.agent` on a free loopback port, up until the block ends."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "nas.agent", "--port", str(port), *options], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the agent exited: {log.read_text()}"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the agent did not answer /health in 60 s: {log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def agent_folder(tmp_path_factory) -> Path:
    """The module agent's token file (left readable by all, as an editor may save it) and its stderr log."""
    folder = tmp_path_factory.mktemp("agent")
    (folder / "token").write_text(TOKEN + "\n")  # the trailing newline an editor adds must not matter
    (folder / "token").chmod(0o644)
    return folder


@pytest.fixture(scope="module")
def agent(agent_folder) -> Iterator[str]:
    with _running_agent(agent_folder / "agent.log", "--token-file", str(agent_folder / "token")) as url:
        yield url


@pytest.fixture(scope="module")
def profile():
    return load_profile(str(QUICK_PROFILE))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    """Four exports of one architecture with different weights: different bytes, so no two share a cache entry."""
    folder = tmp_path_factory.mktemp("onnx")
    paths = []
    for seed in range(4):
        torch.manual_seed(seed)
        paths.append(to_onnx(create_model(SPEC), INPUT_SHAPE, folder / f"model{seed}.onnx"))
    return paths


def _post(url: str, body: bytes, token: str | None = TOKEN, **settings) -> httpx.Response:
    fields = {"runtime": "onnxruntime", "precision": "fp32", "input_shape": list(INPUT_SHAPE), **settings}
    headers = {SETTINGS_HEADER: json.dumps(fields), "Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/measure", content=body, headers=headers, timeout=120)


def _healthy(url: str) -> bool:
    return httpx.get(f"{url}/health").json()["status"] == "ok"


def test_info_names_this_device_and_what_it_measures(agent):
    info, here = agent_info(agent, TOKEN), local_device_info()
    for field in ("device", "device_kind", "runtimes", "precisions", "cpu", "hostname", "power_mode"):
        assert info[field] == here[field], field
    assert info["measurable"]["onnxruntime"] == ["fp32", "int8"]
    assert "torch-cuda" not in info["measurable"]  # it times PyTorch modules, which an upload never carries
    assert info["max_upload_mb"] == 200
    assert info["limits"] == {**asdict(LIMITS), "max_request_s": LIMITS.max_request_s}
    assert load_profile("cpu").protocol.max_seconds <= info["limits"]["seconds"]  # shipped profiles fit
    assert info["limits"]["max_request_s"] <= 300  # the longest one request may hold the measuring lock


def test_a_model_is_measured_on_the_agent_and_a_repeat_comes_from_the_cache(agent, profile, models):
    measurement = measure_remote(agent, TOKEN, models[0], profile, "fp32", INPUT_SHAPE)
    assert measurement.method == "remote"
    assert measurement.backend == "onnxruntime"
    assert measurement.p50_ms > 0
    here = local_device_info()
    assert measurement.device == here["cpu"]  # ONNX Runtime runs on the CPU, on a GPU machine too
    if here["device_kind"] == "cpu":
        assert measurement.device == here["device"]
    assert measurement.model_bytes == models[0].stat().st_size
    again = request_measurement(agent, TOKEN, models[0], profile, "fp32", INPUT_SHAPE)
    assert again["cached"] is True
    assert again["measurement"] == measurement.model_dump(mode="json")
    other_settings = request_measurement(agent, TOKEN, models[0], profile.model_copy(update={"batch": 2}), "fp32",
                                         INPUT_SHAPE)
    assert other_settings["cached"] is False and other_settings["measurement"]["batch"] == 2


def test_concurrent_requests_are_measured_one_at_a_time(agent, profile, models):
    measured_before = httpx.get(f"{agent}/health").json()["measured"]
    answers: dict[int, dict] = {}

    def send(i: int) -> None:
        answers[i] = request_measurement(agent, TOKEN, models[i], profile, "fp32", INPUT_SHAPE)

    threads = [threading.Thread(target=send, args=(i,)) for i in (1, 2, 3)]
    for t in threads:
        t.start()
    busy_seen = []
    while any(t.is_alive() for t in threads):  # /health answers while a model is being timed
        busy_seen.append(httpx.get(f"{agent}/health", timeout=5).json()["busy"])
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted(answers) == [1, 2, 3] and not any(a["cached"] for a in answers.values())
    spans = sorted((a["started_at"], a["finished_at"]) for a in answers.values())
    for (_, finished), (next_started, _) in itertools.pairwise(spans):
        assert finished <= next_started, spans
    assert sum(a["queue_wait_s"] for a in answers.values()) > 0
    assert True in busy_seen
    assert httpx.get(f"{agent}/health").json() == {"status": "ok", "busy": False, "measured": measured_before + 3}


def test_a_wrong_or_missing_token_is_refused(agent, profile, models):
    with pytest.raises(ConfigError, match="token was refused.*--device-token-file"):
        agent_info(agent, "not-the-token")
    with pytest.raises(ConfigError, match="no token was sent"):
        agent_info(agent, None)
    with pytest.raises(ConfigError, match="token"):
        measure_remote(agent, "not-the-token", models[0], profile, "fp32", INPUT_SHAPE)
    assert _post(agent, b"x", token="not-the-token").status_code == 401


def test_an_unreachable_agent_names_the_url_and_how_to_start_it():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ConfigError, match=f"cannot reach the measurement agent at {url}.*nas agent --host"):
        agent_info(url, TOKEN)


def test_bytes_that_are_not_onnx_are_refused_and_the_agent_stays_healthy(agent):
    answer = _post(agent, b"this is a pickle, honest" * 10)
    assert answer.status_code in (415, 422)
    assert "ONNX" in answer.json()["detail"]
    assert _post(agent, b"").status_code == 400
    assert _healthy(agent)


def test_truncated_onnx_is_refused(agent, models):
    data = models[0].read_bytes()
    answer = _post(agent, data[: len(data) // 2])
    assert answer.status_code in (415, 422)
    assert "ONNX model" in answer.json()["detail"]
    assert _healthy(agent)


def test_a_valid_onnx_file_the_runtime_cannot_run_gives_its_message(agent, profile, tmp_path):
    # The checker accepts it (no shape inference), but the Conv wants 3 input channels and gets 1.
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.1] * 108)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])], "mismatched",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 14, 14])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path = tmp_path / "mismatched.onnx"
    onnx.save(model, path)
    with pytest.raises(TrialError, match=r"HTTP 422.*ONNX Runtime could not run the uploaded model"):
        measure_remote(agent, TOKEN, path, profile, "fp32", INPUT_SHAPE)
    assert _healthy(agent)


def test_settings_the_device_lacks_or_that_are_invalid_name_the_field(agent, models):
    body = models[0].read_bytes()
    unknown = _post(agent, body, runtime="tensorrt")
    assert unknown.status_code == 400
    assert "'tensorrt'" in unknown.json()["detail"] and "onnxruntime (fp32, int8)" in unknown.json()["detail"]
    torch_cuda = _post(agent, body, runtime="torch-cuda", precision="fp16")
    assert torch_cuda.status_code == 400 and "accepts only ONNX" in torch_cuda.json()["detail"]
    fp16 = _post(agent, body, precision="fp16")
    assert fp16.status_code == 400 and "precision 'fp16'" in fp16.json()["detail"]
    bad_batch = _post(agent, body, batch=0)
    assert bad_batch.status_code == 422 and "batch" in bad_batch.json()["detail"]
    bad_protocol = _post(agent, body, protocol={"min_runs": 1})
    assert bad_protocol.status_code == 422 and "protocol.min_runs" in bad_protocol.json()["detail"]
    missing = httpx.post(f"{agent}/measure", content=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 400 and SETTINGS_HEADER in missing.json()["detail"]


def test_an_upload_over_the_limit_is_refused_with_413(tmp_path, models, profile):
    body = models[0].read_bytes()
    assert len(body) > 1100
    with _running_agent(tmp_path / "agent.log", "--max-upload-mb", "0.001") as url:
        declared = _post(url, body, token=None)
        assert declared.status_code == 413 and "--max-upload-mb" in declared.json()["detail"]
        streamed = httpx.post(  # no Content-Length: the limit holds while the body streams in
            f"{url}/measure", content=iter([body[:800], body[800:]]),
            headers={SETTINGS_HEADER: MeasureSettings.from_profile(profile, "fp32", INPUT_SHAPE).header(),
                     "Content-Type": "application/octet-stream"})
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        with pytest.raises(TrialError, match="HTTP 413"):
            measure_remote(url, None, models[0], profile, "fp32", INPUT_SHAPE)
        assert _healthy(url)


def test_the_agent_refuses_to_listen_off_loopback_without_a_token():
    proc = subprocess.run([sys.executable, "-m", "nas.agent", "--host", "0.0.0.0", "--port", str(_free_port())],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "without a token" in proc.stderr and "--token-file" in proc.stderr


@pytest.mark.slow
def test_a_search_measures_every_candidate_through_the_agent(agent, tmp_path):
    (tmp_path / "token").write_text(TOKEN)
    proc = run_nas("search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(QUICK_PROFILE),
                   "--trials", "2", "--epochs", "1", "--no-baselines", "--study", "remote", "--device-url", agent,
                   "--device-token-file", str(tmp_path / "token"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    device = local_device_info()["device"]
    assert doc["members"] and all(m["latency"]["method"] == "remote" and m["latency"]["device"] == device
                                  for m in doc["members"])
    for trial in (tmp_path / "results" / "remote" / "trials").iterdir():
        assert json.loads((trial / "measurement.json").read_text())["method"] == "remote"
    settings = json.loads((tmp_path / "results" / "remote" / "settings.json").read_text())
    assert settings["latency_method"] == "remote"


@pytest.mark.slow
def test_a_jetson_search_against_a_cpu_agent_is_refused_unless_overridden(agent, tmp_path):
    """Settled point 5: the jetson-orin profile against this x86 agent names both; --any-device measures there with
    the runtime the agent has, and the records say where it really ran."""
    (tmp_path / "token").write_text(TOKEN)
    args = ("search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", "jetson-orin", "--trials", "1",
            "--epochs", "1", "--no-baselines", "--study", "mismatch", "--device-url", agent, "--device-token-file",
            str(tmp_path / "token"))
    refused = run_nas(*args, cwd=tmp_path)
    assert refused.returncode == 2
    assert "does not match hardware profile 'jetson-orin-agx'" in refused.stderr and "AGX Orin" in refused.stderr
    assert local_device_info()["device"] in refused.stderr and "--any-device" in refused.stderr
    assert not (tmp_path / "results" / "mismatch" / "trials").exists()  # nothing was trained
    overridden = run_nas(*args, "--any-device", "--json", cwd=tmp_path)
    assert overridden.returncode == 0, overridden.stderr
    doc = json.loads(overridden.stdout)
    latency = doc["members"][0]["latency"]
    assert latency["device"] == local_device_info()["device"] and latency["backend"] == "onnxruntime"
    assert latency["method"] == "remote" and doc["latency_target"]["runtime"] == "onnxruntime"


@pytest.mark.parametrize(("settings", "refusal"), [  # the probes: each held the lock for a minute or more
    ({"protocol": {"min_runs": 1e15, "max_seconds": 10}}, "protocol.min_runs 1000000000000000 is above this "
                                                          "agent's limit of 100000"),
    ({"protocol": {"max_seconds": 1e12}}, "protocol.max_seconds 1e+12 is above this agent's limit of 20"),
    ({"input_shape": [1, 1e5, 1e5]}, "input_shape[1] 100000 is above this agent's limit of 4096"),
    ({"batch": 10**6}, "batch 1000000 is above this agent's limit of 64"),
    ({"throughput_batch": 512, "input_shape": [1, 1024, 1024]}, "batch x input_shape (values) 536870912 is above"),
    ({"protocol": {"warmup_runs": 10**6}}, "protocol.warmup_runs 1000000 is above this agent's limit of 1000"),
    ({"threads": 10**4}, "threads 10000 is above this agent's limit of 256"),
    ({"protocol": {"sessions": 50}}, "protocol.sessions 50 is above this agent's limit of 10"),
    ({"protocol": {"sessions": 5, "max_seconds": 20}}, "the request's longest time"),
])
def test_settings_beyond_the_agents_limits_are_refused_before_they_queue(agent, models, settings, refusal):
    measured = httpx.get(f"{agent}/health").json()["measured"]
    started = time.monotonic()
    answer = _post(agent, models[0].read_bytes(), **settings)
    assert answer.status_code == 422 and refusal in answer.json()["detail"], answer.text
    assert "the limits are in /info" in answer.json()["detail"]
    assert time.monotonic() - started < 30  # refused, not timed (each of these held the lock for over 40 s)
    assert httpx.get(f"{agent}/health").json() == {"status": "ok", "busy": False, "measured": measured}


def test_a_timing_process_is_stopped_at_its_timeout(profile, models, monkeypatch):
    """What bounds the time one request holds the lock: the timing process is killed past warmup_s + 2 x
    max_seconds + the grace (here cut to nothing, so starting Python alone overruns it)."""
    monkeypatch.setattr(onnxruntime_cpu, "TIMER_GRACE_S", 0.0)
    quick = profile.model_copy(update={"protocol": profile.protocol.model_copy(update={"warmup_s": 0.0,
                                                                                        "max_seconds": 0.01})})
    with pytest.raises(TrialError, match=r"took over 0.02 s .*and was stopped"):  # (after any wait for the device)
        onnxruntime_cpu.OnnxRuntimeCPU().measure(models[0], profile=quick, precision="fp32", input_shape=INPUT_SHAPE)


def test_the_api_description_needs_the_token(agent):
    """With a token, /openapi.json needs it like every endpoint but /health; /docs and /redoc (browser pages that
    could not send it) are not served."""
    assert httpx.get(f"{agent}/openapi.json").status_code == 401
    assert httpx.get(f"{agent}/openapi.json", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    described = httpx.get(f"{agent}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert described.status_code == 200 and "/measure" in described.json()["paths"]
    assert httpx.get(f"{agent}/docs").status_code == 404 and httpx.get(f"{agent}/redoc").status_code == 404


def test_a_short_token_is_refused_and_a_loose_token_file_is_warned_about(agent, agent_folder, tmp_path):
    log = (agent_folder / "agent.log").read_text()
    assert f"warning: --token-file {agent_folder / 'token'} has mode 644" in log and "chmod 600" in log
    short = tmp_path / "token"
    short.write_text("x")
    short.chmod(0o600)
    proc = subprocess.run([sys.executable, "-m", "nas.agent", "--port", str(_free_port()), "--token-file", str(short)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert f"--token-file {short} holds 1 character(s); a token needs at least 16" in proc.stderr
    assert "warning" not in proc.stderr  # mode 600: nothing to warn about
