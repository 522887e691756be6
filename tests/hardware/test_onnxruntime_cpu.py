"""The ONNX Runtime CPU backend times real exported models, with provenance, under a quick protocol."""

import math
import tempfile
import threading
import time

import pytest
import yaml

from nas.errors import ConfigError, TrialError
from nas.export import to_onnx
from nas.hardware import load_profile, measure
from nas.hardware.onnxruntime_cpu import device_lock
from nas.models import create_model
from nas.models.complexity import count_macs
from nas.spec import Spec, TrainingSpec

QUICK = {
    "name": "quick-cpu",
    "description": "the cpu profile with a protocol short enough for tests",
    "backend": "onnxruntime",
    "precisions": ["fp32", "int8"],
    "protocol": {
        "warmup_runs": 2, "warmup_s": 0, "min_runs": 20, "min_seconds": 0.05,
        "throughput_min_runs": 3, "throughput_min_seconds": 0.01,
    },
}


def _dsconv(stem, widths, input_size, stem_stride):
    arch = {
        "stem_width": stem, "stem_stride": stem_stride, "se": False, "activation": "relu", "dropout": 0.0,
        "stages": [{"width": w, "depth": 1, "stride": 2, "kernel": 3} for w in widths],
    }
    return Spec(family="dsconv", arch=arch, input_size=input_size, in_channels=1, num_classes=2,
                training=TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0))


def _export(spec, path):
    model = create_model(spec)
    return to_onnx(model, spec.input_shape, path), count_macs(model, spec.input_shape)


SMALL = _dsconv(8, [16], 28, 2)
BIG = _dsconv(32, [128, 256], 64, 1)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "quick-cpu.yaml"
    path.write_text(yaml.safe_dump(QUICK))
    return load_profile(str(path))


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    return _export(SMALL, tmp_path_factory.mktemp("onnx") / "small.onnx")


def test_measurement_statistics_and_provenance(profile, small_onnx):
    m = measure(small_onnx[0], profile, "fp32", SMALL.input_shape)
    assert m.runs >= 20
    for value in (m.p50_ms, m.p95_ms, m.p99_ms, m.mean_ms):
        assert math.isfinite(value) and value > 0
    assert m.p50_ms <= m.p95_ms <= m.p99_ms
    assert m.backend == "onnxruntime"
    assert m.runtime_version.startswith("onnxruntime")
    assert m.device.strip()
    assert (m.precision, m.batch, m.method) == ("fp32", 1, "measured")
    assert m.threads >= 1
    assert 0 <= m.peak_memory_mb < 2000
    assert m.throughput_ips > 0 and m.throughput_batch == profile.throughput_batch
    assert m.model_bytes == small_onnx[0].stat().st_size


def test_several_sessions_keep_the_fastest_process(profile, small_onnx):
    three = profile.model_copy(update={"protocol": profile.protocol.model_copy(update={"sessions": 3})})
    m = measure(small_onnx[0], three, "fp32", SMALL.input_shape)
    assert m.session_p50_ms is not None and len(m.session_p50_ms) == 3
    assert m.p50_ms == min(m.session_p50_ms) and m.method == "measured"
    assert measure(small_onnx[0], profile, "fp32", SMALL.input_shape).session_p50_ms is None


def test_bigger_model_is_slower(profile, small_onnx, tmp_path):
    big_path, big_macs = _export(BIG, tmp_path / "big.onnx")
    assert big_macs >= 20 * small_onnx[1], "the two models must differ enough for timing to tell them apart"
    small = measure(small_onnx[0], profile, "fp32", SMALL.input_shape)
    big = measure(big_path, profile, "fp32", BIG.input_shape)
    assert big.p50_ms > small.p50_ms


def test_precision_not_in_profile(profile, small_onnx):
    with pytest.raises(ConfigError) as err:
        measure(small_onnx[0], profile, "fp16", SMALL.input_shape)
    assert "fp16" in str(err.value)
    assert "fp32, int8" in str(err.value)


def test_corrupt_onnx_is_a_trial_error(profile, tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07not an onnx model" * 64)
    with pytest.raises(TrialError) as err:
        measure(path, profile, "fp32", SMALL.input_shape)
    assert str(path) in str(err.value)


def test_device_lock_serialises(tmp_path, monkeypatch):
    """Two workers timing on one device must queue: each holds the lock 0.3 s, so together >= 0.6 s, no overlap."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the lock file goes here, not beside real ones
    spans = []

    def hold():
        with device_lock("test device"):
            start = time.perf_counter()
            time.sleep(0.3)
            spans.append((start, time.perf_counter()))

    began = time.perf_counter()
    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - began >= 0.6
    assert list(tmp_path.glob("nas-measure-*.lock"))
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end


def test_disturbed_runs_are_recognised():
    """A tail far above the median marks a run disturbed where no reference kernel assessed it."""
    from nas.hardware import Measurement

    base = dict(p50_ms=1.0, p99_ms=9.0, mean_ms=1.2, cv=0.3, runs=100, seconds=1.0, throughput_ips=None,
                throughput_batch=None, peak_memory_mb=1.0, model_bytes=1, backend="onnxruntime",
                runtime_version="onnxruntime x", device="cpu", precision="fp32", batch=1, threads=2,
                method="measured", load_avg=0.0)
    assert Measurement(p95_ms=1.9, **base).stable
    assert not Measurement(p95_ms=4.4, **base).stable
    assert Measurement(p95_ms=1.9, **base).attempts == 1
    assert Measurement(p95_ms=4.4, **base).disturbed and not Measurement(p95_ms=1.9, **base).disturbed
