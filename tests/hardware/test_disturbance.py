"""Timings that notice interference: one taken while this test keeps both cores busy is labelled disturbed and
retaken within a bounded time, and says so when the machine never quiets."""

import multiprocessing
import time

import pytest
import yaml

from nas.export import to_onnx
from nas.hardware import load_profile, measure
from nas.hardware._measurement import Disturbance
from nas.hardware.disturbance import SLOWDOWN_LIMIT, assess, quiet_reference, time_reference
from nas.hardware.onnxruntime_cpu import available_threads
from nas.hardware._measurement import cpu_name

BUSY_S = 180.0
"""The busy loop's safety bound (it is stopped as soon as the measurement returns): long enough to cover a wait
for the device lock that other timers on this machine may hold."""


def _spin(until: float) -> None:
    x = 0
    while time.time() < until:
        x += 1


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump({
        "name": "quick-disturbed", "description": "quick protocol, short quiet wait", "backend": "onnxruntime",
        "precisions": ["fp32"], "threads": 2, "throughput_batch": 2,
        "protocol": {"warmup_runs": 2, "warmup_s": 0, "min_runs": 30, "min_seconds": 0.2, "max_seconds": 2.0,
                     "throughput_min_runs": 3, "throughput_min_seconds": 0.01, "max_attempts": 3,
                     "quiet_wait_s": 3.0}}))
    return load_profile(str(path))


def test_assessment_from_reference_and_spread():
    quiet = assess((1.0, 1.1), 1.0, 1.0, 1.5, 0.5)
    assert isinstance(quiet, Disturbance) and not quiet.disturbed and quiet.reason is None
    slow = assess((1.0, 2 * SLOWDOWN_LIMIT), 1.0, 1.0, 1.5, 4.0)
    assert slow.disturbed and "reference kernel" in slow.reason
    tail = assess((1.0, 1.0), 1.0, 1.0, 3.0, 0.5)
    assert tail.disturbed and "p95" in tail.reason


@pytest.mark.slow
def test_busy_cores_label_and_retake(profile, tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    onnx_file = to_onnx(model, (1, 28, 28), tmp_path / "m.onnx")
    threads = min(2, available_threads())
    # The machine's reference before the load: the best of three, so that another test process busy at this moment
    # does not set the bar the spinners must clear.
    quiet_reference(cpu_name(), threads, min(time_reference(threads) for _ in range(3)))
    until = time.time() + BUSY_S
    busy = [multiprocessing.Process(target=_spin, args=(until,)) for _ in range(2)]
    for p in busy:
        p.start()
    try:
        time.sleep(0.5)
        m = measure(onnx_file, profile.model_copy(update={"threads": threads}), "fp32", (1, 28, 28))
    finally:
        for p in busy:
            p.terminate()
            p.join()
    d = m.disturbance
    assert d is not None
    assert m.attempts >= 2 and d.retakes == m.attempts - 1, "a disturbed timing is retaken"
    assert d.disturbed and d.gave_up and d.reason, "the machine stayed busy throughout: the record says so"
    assert m.attempts <= profile.protocol.max_attempts and d.waited_s <= profile.protocol.quiet_wait_s + 1.0, \
        "retaking is bounded"
