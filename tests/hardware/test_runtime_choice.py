"""The per-candidate runtime choice on fixed measurements, and both CPU runtimes timed for one real model."""

import pytest
import yaml

from nas.hardware import Measurement, load_profile, open_target
from nas.hardware.runtime_choice import INT8_MARGIN, RuntimeTiming, choose, measure_runtimes, measure_with


def _m(runtime, precision, p50):
    return Measurement(p50_ms=p50, p95_ms=p50 * 1.2, p99_ms=p50 * 1.3, mean_ms=p50, cv=0.05, runs=100, seconds=1.0,
                       throughput_ips=None, throughput_batch=None, peak_memory_mb=1.0, model_bytes=1,
                       backend=runtime, runtime_version=f"{runtime} x", device="cpu", precision=precision, batch=1,
                       threads=2, method="measured", load_avg=0.0)


def _t(runtime, precision, p50):
    return RuntimeTiming(runtime=runtime, precision=precision, measurement=_m(runtime, precision, p50))


def test_fastest_runtime_is_chosen():
    choice = choose([_t("onnxruntime", "fp32", 0.93), _t("openvino", "fp32", 0.83)], ("fp32",))
    assert (choice.runtime, choice.precision) == ("openvino", "fp32")
    assert choice.chosen.p50_ms == 0.83 and "0.930" in choice.reason
    assert set(choice.by_precision) == {"fp32"} and choice.by_precision["fp32"].backend == "openvino"


def test_int8_slower_than_fp32_is_dropped():
    """MobileNetV3-Small's INT8 on ONNX Runtime is 1.3x slower than its fp32 (issue 21): fp32 ships."""
    timings = [_t("onnxruntime", "fp32", 0.36), _t("onnxruntime", "int8", 0.47), _t("openvino", "fp32", 0.48),
               _t("openvino", "int8", 0.40)]
    choice = choose(timings, ("fp32", "int8"))
    assert (choice.runtime, choice.precision) == ("onnxruntime", "fp32")
    assert "dropped" in choice.reason and "openvino int8" in choice.reason


def test_int8_kept_only_beyond_the_margin():
    just_under = 1.0 * (1 - INT8_MARGIN) + 0.01
    assert choose([_t("onnxruntime", "fp32", 1.0), _t("onnxruntime", "int8", just_under)],
                  ("fp32", "int8")).precision == "fp32"
    fast = choose([_t("onnxruntime", "fp32", 24.5), _t("onnxruntime", "int8", 8.4), _t("openvino", "fp32", 41.8)],
                  ("fp32", "int8"))
    assert (fast.runtime, fast.precision) == ("onnxruntime", "int8")


def test_choice_never_slower_than_the_first_runtime_fp32():
    timings = [_t("onnxruntime", "fp32", 1.0), _t("openvino", "fp32", 1.4), _t("onnxruntime", "int8", 0.95)]
    choice = choose(timings, ("fp32", "int8"))
    assert choice.chosen.p50_ms <= 1.0


def test_only_allowed_precisions_and_skipped_runtimes():
    """An int8 candidate chooses among INT8 runtimes; a runtime not timed is kept in the record with why."""
    skipped = RuntimeTiming(runtime="openvino", precision="int8", skipped="not timed: floor over")
    choice = choose([_t("onnxruntime", "fp32", 1.0), _t("onnxruntime", "int8", 2.0), skipped], ("int8",))
    assert (choice.runtime, choice.precision) == ("onnxruntime", "int8")
    assert skipped in choice.timings
    with pytest.raises(ValueError):
        choose([skipped], ("int8",))


def test_both_cpu_runtimes_timed_for_a_real_model(tmp_path):
    """measure_runtimes times each runtime the profile lists (or records why not) and keeps every timing."""
    import torch

    from nas.export import to_onnx

    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({
        "name": "both", "description": "two runtimes", "backend": "onnxruntime", "runtimes": ["onnxruntime", "openvino"],
        "precisions": ["fp32", "int8"], "threads": 1, "throughput_batch": 2,
        "protocol": {"warmup_runs": 2, "warmup_s": 0, "min_runs": 20, "min_seconds": 0.05,
                     "throughput_min_runs": 3, "throughput_min_seconds": 0.01, "quiet_wait_s": 1.0}}))
    target = open_target(load_profile(str(path)))
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    onnx_file = to_onnx(model, (1, 28, 28), tmp_path / "m.onnx")
    choice = measure_runtimes(target, onnx_file, ("fp32",), measure_with(None, (1, 28, 28)),
                              lambda *a: pytest.fail("no INT8 asked"), tmp_path)
    assert [t.runtime for t in choice.timings] == ["onnxruntime", "openvino"]
    onnxruntime, openvino = choice.timings
    assert onnxruntime.measurement.backend == "onnxruntime"
    assert (openvino.measurement is None) == (openvino.skipped is not None)
    assert openvino.measurement is None or openvino.measurement.backend == "openvino"
    timed = [t.measurement.p50_ms for t in choice.timings if t.measurement]
    assert choice.chosen.p50_ms == min(timed)


def test_deployed_runtime_follows_the_choice():
    """Export ships the chosen runtime; a float export of an int8 candidate ships the fastest fp32 runtime."""
    from nas.hardware.runtime_choice import deployed_runtime

    timings = [_t("onnxruntime", "fp32", 1.0), _t("onnxruntime", "int8", 0.8), _t("openvino", "fp32", 0.7),
               _t("openvino", "int8", 0.3)]
    choice = choose(timings, ("int8",))
    assert (choice.runtime, choice.precision) == ("openvino", "int8")
    assert deployed_runtime(choice, "int8") == "openvino"
    assert deployed_runtime(choice.model_copy(update={"timings": timings[:3]}), "fp32") == "openvino"
    assert deployed_runtime(choose(timings[:2], ("int8",)), "fp32") == "onnxruntime"
    assert deployed_runtime(None, "fp32") == "onnxruntime"
    gpu = choose([_t("torch-cuda", "fp32", 0.2)], ("fp32",))
    assert deployed_runtime(gpu, "fp32") == "onnxruntime"  # a GPU runtime takes the ONNX file; predict runs it on ORT
