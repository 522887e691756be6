"""The latency estimate: fitted to published Jetson latencies, labelled as an estimate, and sensible between models."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import timm
from torch import nn

from nas.compress.quantize import quantize_int8
from nas.errors import ConfigError
from nas.export import to_onnx
from nas.hardware import create_backend, load_profile
from nas.hardware.estimate import cache_dir, estimate_ms, fit_profile, graph_features

# Measured (`nas calibrate`): the AGX Orin's fit is within 4.6% of its four published points, the Orin Nano's
# within 5.3% (RMS 3.5% and 4.3%); the bounds leave room for timm's exports to shift a kernel, no more.
MAX_FIT_ERROR = {"jetson-orin-agx": 0.05, "jetson-orin-nano": 0.06}
AGX, NANO, NX = "jetson-orin-agx", "jetson-orin-nano", "jetson-orin-nx"
JETSONS = (AGX, NX, NANO)


@pytest.fixture(scope="module")
def onnx_224(tmp_path_factory):
    """ResNet-18 and MobileNetV3-Large at 224x224, exported as a search exports them."""
    folder = tmp_path_factory.mktemp("estimate")
    return {name: to_onnx(timm.create_model(name, pretrained=False, num_classes=1000), (3, 224, 224),
                          folder / f"{name}.onnx")
            for name in ("resnet18", "mobilenetv3_large_100")}


@pytest.fixture(scope="module")
def agx_fit():
    return fit_profile(load_profile(AGX))


def test_agx_fit_reproduces_published_points(agx_fit, onnx_224):
    assert agx_fit.profile == AGX and len(agx_fit.points) == 4
    assert agx_fit.max_relative_error < MAX_FIT_ERROR[AGX]
    assert agx_fit.rms_relative_error <= agx_fit.max_relative_error
    assert 0 < agx_fit.eff_compute <= 1 and agx_fit.eff_memory > 0 and agx_fit.overhead_ms > 0
    for point in agx_fit.points:
        assert abs(point.fitted_ms / point.published_ms - 1) <= agx_fit.max_relative_error + 1e-12
    # A fresh export of a calibration model is estimated at its fitted latency.
    fitted = {p.model: p.fitted_ms for p in agx_fit.points}
    for name, path in onnx_224.items():
        assert estimate_ms(path, load_profile(AGX), "fp16") == pytest.approx(fitted[name], rel=1e-6)
    assert any(cache_dir().glob("resnet50_c3_s224_b1_fp16_*.json"))  # features cached on disk


def test_graph_features_count_known_flops_and_kernels(onnx_224):
    resnet = graph_features(onnx_224["resnet18"], batch=1, precision="fp16")
    mobilenet = graph_features(onnx_224["mobilenetv3_large_100"], batch=1, precision="fp16")
    assert sum(resnet.flops) == pytest.approx(2 * 1.814e9, rel=0.01)  # ResNet-18: 1.81 GMACs at 224x224
    assert sum(mobilenet.flops) == pytest.approx(2 * 0.217e9, rel=0.02)  # grouped convs count per group
    # 20 convolutions (ReLU fused), 8 residual adds, max pool, global pool, classifier
    assert resnet.kernels == 31
    fp32 = graph_features(onnx_224["resnet18"], batch=1, precision="fp32")
    assert fp32.weight_bytes == pytest.approx(2 * resnet.weight_bytes)
    assert fp32.weight_bytes == pytest.approx(4 * 11.69e6, rel=0.01)  # 11.69 M parameters


@pytest.mark.parametrize("layers, kernels", [
    (lambda: [nn.Conv2d(3, 8, 3), nn.SiLU()], 1),  # exported as Conv, Sigmoid, Mul: one fused kernel
    (lambda: [nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2)], 2),
    (lambda: [nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
              nn.Linear(8, 2)], 3),  # BatchNorm folds into the convolution at export
], ids=["silu", "relu-pool", "bn-hardswish-head"])
def test_activations_fuse_into_the_kernel_before_them(tmp_path, layers, kernels):
    path = to_onnx(nn.Sequential(*layers()), (3, 16, 16), tmp_path / "tiny.onnx")
    assert graph_features(path, batch=1, precision="fp16").kernels == kernels


def test_estimate_ranks_resnet18_faster_than_mobilenetv3_large_on_agx(agx_fit, onnx_224):
    agx = load_profile(AGX)
    assert estimate_ms(onnx_224["resnet18"], agx, "fp16") < estimate_ms(onnx_224["mobilenetv3_large_100"], agx, "fp16")


def test_int8_is_not_slower_than_fp16(onnx_224):
    agx = load_profile(AGX)
    fp16, int8 = (estimate_ms(onnx_224["resnet18"], agx, p) for p in ("fp16", "int8"))
    assert int8 <= fp16
    assert estimate_ms(onnx_224["resnet18"], agx, "fp32") > fp16


def test_qdq_graph_is_priced_as_its_float_kernels(tmp_path):
    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    float_onnx = to_onnx(model, (3, 64, 64), tmp_path / "float.onnx")
    calibration = np.random.default_rng(0).random((8, 3, 64, 64), dtype=np.float32)
    qdq = quantize_int8(float_onnx, tmp_path / "int8.onnx", calibration)
    expected = graph_features(float_onnx, batch=1, precision="int8")
    got = graph_features(qdq, batch=1, precision="int8")
    # The same kernels (a pre-processed graph may list them in another order), weights and activations.
    assert sorted(zip(got.flops, got.bytes_moved)) == sorted(zip(expected.flops, expected.bytes_moved))
    assert got.weight_bytes == expected.weight_bytes
    assert got.largest_activation_bytes == expected.largest_activation_bytes


@pytest.mark.parametrize("name", JETSONS)
def test_estimated_measurement_says_it_is_an_estimate(name, onnx_224):
    profile = load_profile(name)
    m = create_backend("estimate").measure(onnx_224["resnet18"], profile=profile, precision="fp16",
                                           input_shape=(3, 224, 224))
    assert (m.method, m.backend) == ("estimated", "estimate")
    assert m.device == f"{profile.description} (estimated)"
    assert "nas estimate (fit on 4 points of netspresso-trainer" in m.runtime_version
    assert (name == NX) == ("efficiencies of jetson-orin-nano, overhead x0.68 for the GPU clock" in m.runtime_version)
    assert m.p50_ms == m.p95_ms == m.p99_ms == m.mean_ms > 0 and m.runs == 0 and m.cv == 0
    assert m.p50_ms == pytest.approx(estimate_ms(onnx_224["resnet18"], profile, "fp16"))
    assert (m.batch, m.throughput_batch, m.precision, m.threads) == (1, 8, "fp16", None)
    assert m.throughput_ips > 1000 / m.p50_ms  # a batch of 8 amortises per-kernel overhead
    assert m.peak_memory_mb > 2 * 11.69e6 / 2**20  # at least ResNet-18's FP16 weights
    assert m.model_bytes == onnx_224["resnet18"].stat().st_size


def test_smaller_modules_are_estimated_slower(onnx_224):
    ms = [estimate_ms(onnx_224["resnet18"], load_profile(name), "fp16") for name in JETSONS]
    assert ms[0] < ms[1] < ms[2]


def test_estimate_refuses_a_precision_the_profile_lacks(onnx_224):
    with pytest.raises(ConfigError, match="fp16.*not available.*fp32, int8"):
        create_backend("estimate").measure(onnx_224["resnet18"], profile=load_profile("cpu"), precision="fp16",
                                           input_shape=(3, 224, 224))


def test_profile_without_spec_sheet_or_calibration_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"cpu\.yaml: spec_sheet: missing"):
        fit_profile(load_profile("cpu"))
    uncalibrated = load_profile(AGX).model_copy(update={"calibration": None})
    with pytest.raises(ConfigError, match=r"jetson-orin-agx\.yaml: calibration: missing"):
        fit_profile(uncalibrated)


def test_jetson_profiles_load_and_the_alias_names_the_agx():
    assert load_profile("jetson-orin") == load_profile(AGX)
    profiles = [load_profile(name) for name in JETSONS]
    for profile, match in zip(profiles, ("AGX Orin", "Orin NX", "Orin Nano")):
        assert (profile.backend, profile.device_kind, profile.device_match) == ("tensorrt", "jetson", match)
        assert profile.precisions == ["fp32", "fp16", "int8"] and profile.channel_multiple == 8
        assert profile.protocol.min_runs == 100 and profile.protocol.min_seconds == 3.0
    agx, nx, nano = profiles
    assert agx.calibration is not None and nano.calibration is not None and nx.calibration_from == NANO
    for field in ("fp16_tflops", "int8_tops", "memory_bandwidth_gbs"):
        assert getattr(agx.spec_sheet, field) > getattr(nx.spec_sheet, field) > getattr(nano.spec_sheet, field)
    assert fit_profile(nx) == fit_profile(nano) != fit_profile(agx)
    assert all(profile.spec_sheet.sources for profile in profiles)  # every figure says where it was published


def calibrate_args(*argv: str) -> argparse.Namespace:
    """`nas calibrate ARGV` as the command line parses it (every option at its default)."""
    from nas.cli.main import build_parser

    return build_parser().parse_args(["calibrate", *argv])


def test_calibrate_prints_one_json_document(agx_fit, capsys):
    from nas.cli import calibrate

    assert calibrate.run(calibrate_args("--hardware", AGX, "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["hardware"] == AGX
    fit = document["fit"]
    assert fit["max_relative_error"] == pytest.approx(agx_fit.max_relative_error)
    assert [p["model"] for p in fit["points"]] == [
        "resnet18", "resnet50", "mobilenetv3_small_100", "mobilenetv3_large_100"]
    assert {"eff_compute", "eff_memory", "overhead_ms", "rms_relative_error", "source"} <= set(fit)


def test_calibrate_table_for_a_borrowed_fit(capsys):
    from nas.cli import calibrate

    assert calibrate.run(calibrate_args("--hardware", NX)) == 0
    out = capsys.readouterr().out
    assert "fitted on jetson-orin-nano's points" in out and "overhead scaled x0.68 for its GPU clock" in out
    assert "resnet50" in out and "fit error: max" in out and "spec sheet: CUDA deviceQuery on an Orin NX" in out


def test_calibrate_reports_every_profile_with_a_spec_sheet_and_its_sources(capsys):
    from nas.cli import calibrate

    assert calibrate.run(calibrate_args("--json")) == 0
    documents = {d["hardware"]: d for d in json.loads(capsys.readouterr().out)["profiles"]}
    assert set(JETSONS) <= set(documents)
    for name in JETSONS:
        assert documents[name]["spec_sheet_sources"] and "netspresso-trainer" in documents[name]["fit"]["source"]
    assert documents[NANO]["fit"]["profile"] == NANO and documents[NANO]["estimated_here_ms"] is None
    assert documents[NX]["overhead_scale"] == pytest.approx(625 / 918)


def test_nano_fit_reproduces_its_published_points_and_their_order():
    """Before the Nano had its own points, the AGX fit put all four at 43-59% of the published time and ranked
    MobileNetV3-Large (2.51 ms) faster than ResNet-18 (2.00 ms)."""
    fit = fit_profile(load_profile(NANO))
    assert fit.profile == NANO and fit.max_relative_error < MAX_FIT_ERROR[NANO]
    by_published = sorted(fit.points, key=lambda p: p.published_ms)
    assert [p.model for p in by_published] == ["mobilenetv3_small_100", "resnet18", "mobilenetv3_large_100", "resnet50"]
    assert [p.fitted_ms for p in by_published] == sorted(p.fitted_ms for p in fit.points)


def test_per_kernel_overhead_is_near_constant_in_gpu_cycles_not_in_time():
    """The evidence for scaling a borrowed fit's overhead by clock: each module's own fit."""
    agx, nano = load_profile(AGX), load_profile(NANO)
    cycles = [fit_profile(p).overhead_ms * 1e3 * p.spec_sheet.gpu_clock_mhz for p in (agx, nano)]
    assert cycles[0] == pytest.approx(cycles[1], rel=0.2)
    assert fit_profile(nano).overhead_ms > 1.5 * fit_profile(agx).overhead_ms
