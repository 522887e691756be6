"""A latency ESTIMATE for targets that cannot be reached, calibrated on published latencies and labelled as such.

A Jetson that is not on the network still has a data sheet, and someone has published how long a few well-known
models take on it. Each kernel of the ONNX graph is priced on a roofline,

    kernel_ms = max(flops / (peak(precision) * eff_compute), bytes / (bandwidth * eff_memory)) + overhead_ms,

and the model's latency is the sum over kernels. A kernel is a Conv/ConvTranspose/Gemm/MatMul or a memory-bound op
(pooling, element-wise, resize, ...), with a following activation or x * sigmoid(x) fused into it as TensorRT
does; nodes that do not depend on the input are constant-folded, views and QuantizeLinear/DequantizeLinear free. `bytes`
counts weights, inputs and outputs at the precision's element size. The three factors are fitted by least squares
on log-latency to the profile's `calibration` points, so the estimate reproduces what was published and
interpolates from it; how well it does so is reported (`nas calibrate`) and travels with every estimate.
Every `Measurement` from here says `method: estimated` and its device ends in "(estimated)".
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nas._io import write_json
from nas.errors import ConfigError, TrialError, did_you_mean
from nas.hardware._backend import BACKENDS, LatencyBackend
from nas.hardware._measurement import Measurement
from nas.hardware._profile import Calibration, HardwareProfile, PublishedLatency, SpecSheet, load_profile
from nas.spec import Precision

if TYPE_CHECKING:
    import onnx
    from torch import nn

logger = logging.getLogger(__name__)

ELEMENT_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Views, metadata and quantization markers: a runtime folds these into neighbouring kernels.
FREE_OPS = frozenset({"Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "QuantizeLinear",
                      "DequantizeLinear"})
# Activations a runtime fuses into the kernel that produced their input, when nothing else reads that input.
FUSED_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                               "Elu", "Selu", "Softplus", "Gelu"})
# Where a precision's peak is missing from a spec sheet, the next one used, most conservative first.
PEAK_FALLBACKS: dict[str, tuple[str, ...]] = {
    "int8": ("int8_tops", "fp16_tflops", "fp32_tflops"),
    "fp16": ("fp16_tflops", "fp32_tflops"),
    "fp32": ("fp32_tflops", "fp16_tflops"),
}
FEATURES_VERSION = 2
"""Bump when graph_features changes, so features cached on disk are recomputed."""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas" / "estimate"


@dataclass(frozen=True)
class GraphFeatures:
    """What the roofline needs from one graph at one batch and precision."""

    flops: tuple[float, ...]
    """Per kernel (multiply-adds count two)."""
    bytes_moved: tuple[float, ...]
    """Per kernel: weights, inputs and outputs at the precision's element size."""
    weight_bytes: float
    largest_activation_bytes: float
    """The largest inputs + outputs of any one kernel: what must be resident at once besides the weights."""

    @property
    def kernels(self) -> int:
        return len(self.flops)


@dataclass(frozen=True)
class PointFit:
    model: str
    input_size: int
    in_channels: int
    precision: Precision
    batch: int
    published_ms: float
    fitted_ms: float

    @property
    def relative_error(self) -> float:
        return self.fitted_ms / self.published_ms - 1.0


@dataclass(frozen=True)
class Fit:
    """The fitted factors of one profile, and how well they reproduce the published points."""

    profile: str
    """The profile whose published points and spec sheet were fitted (for the Orin NX: the Orin Nano's)."""
    source: str
    eff_compute: float
    eff_memory: float
    overhead_ms: float
    """Per kernel: launch and scheduling time that no roofline sees."""
    points: tuple[PointFit, ...]

    @property
    def max_relative_error(self) -> float:
        return max(abs(p.relative_error) for p in self.points)

    @property
    def rms_relative_error(self) -> float:
        return float(np.sqrt(np.mean([p.relative_error ** 2 for p in self.points])))

    def as_dict(self) -> dict:
        return {**asdict(self), "points": [{**asdict(p), "relative_error": p.relative_error} for p in self.points],
                "max_relative_error": self.max_relative_error, "rms_relative_error": self.rms_relative_error}


# --- graph features ------------------------------------------------------------------------------------------------

def _static_shapes(model: onnx.ModelProto, batch: int, input_shape: tuple[int, ...] | None) -> onnx.ModelProto:
    """The graph with its batch (and, if given, per-sample shape) fixed and every tensor's shape inferred."""
    import onnx  # onnx takes seconds to import: only when a graph is priced, not when profiles are listed
    from onnx import shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise TrialError(f"the latency estimate needs a graph with one input, got {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    wanted = [batch, *input_shape] if input_shape is not None else [batch, *(d.dim_value for d in dims[1:])]
    if len(wanted) != len(dims) or not all(wanted[1:]):
        shown = [d.dim_value or d.dim_param for d in dims]
        raise TrialError(f"cannot fix the graph input {inputs[0].name!r} (shape {shown}) to a static shape "
                         f"{wanted}: pass input_shape")
    for dim, value in zip(dims, wanted):
        dim.Clear()
        dim.dim_value = value
    for output in graph.output:
        for dim in output.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()
    del graph.value_info[:]
    return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)


def _tensor_shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Every tensor whose shape is static after inference: weights, constants, inputs, intermediates, outputs."""
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            shapes[node.output[0]] = list(node.attribute[0].t.dims)
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in tensor_type.shape.dim):
            shapes[info.name] = [d.dim_value for d in tensor_type.shape.dim]
    return shapes


def _compute_flops(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> float:
    """Two per multiply-add; grouped and depthwise convolutions count only their group's input channels."""
    if node.op_type == "Conv":  # out elements x (in channels per group x kernel area)
        return 2.0 * np.prod(shapes[node.output[0]]) * np.prod(shapes[node.input[1]][1:])
    if node.op_type == "ConvTranspose":  # every input element meets (out channels per group x kernel area)
        return 2.0 * np.prod(shapes[node.input[0]]) * np.prod(shapes[node.input[1]][1:])
    a = shapes[node.input[0]]
    transposed = node.op_type == "Gemm" and any(att.name == "transA" and att.i for att in node.attribute)
    reduced = a[-2] if transposed else a[-1]
    return 2.0 * np.prod(shapes[node.output[0]]) * reduced


def _swish_product(sigmoid: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]]) -> str | None:
    """The output of x * sigmoid(x) (SiLU, as ONNX spells it before opset 22) when nothing else reads x or
    sigmoid(x): a runtime computes the pair in the epilogue of the kernel that wrote x."""
    x, gate = sigmoid.input[0], sigmoid.output[0]
    others = [n for n in readers[x] if n.output[0] != gate]
    if (len(others) == 1 and others[0].op_type == "Mul" and set(others[0].input) == {x, gate}
            and len(readers.get(gate, [])) == 1):
        return others[0].output[0]
    return None


def graph_features(onnx_model: Path | onnx.ModelProto, *, batch: int, precision: Precision,
                   input_shape: tuple[int, ...] | None = None) -> GraphFeatures:
    """Per-kernel FLOPs and bytes of `onnx_model` at `batch` (QDQ graphs priced as the kernels they become)."""
    import onnx

    model = onnx_model if isinstance(onnx_model, onnx.ModelProto) else onnx.load(str(onnx_model))
    graph = _static_shapes(model, batch, input_shape).graph
    shapes = _tensor_shapes(graph)
    counts = {name: int(np.prod(shape, dtype=np.int64)) for name, shape in shapes.items()}
    element_bytes = ELEMENT_BYTES[precision]
    initializers = {t.name for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    # Tensors computed from the input at run time; the rest (weights, shapes) are folded when the engine is built.
    dynamic = {i.name for i in graph.input if i.name not in initializers}
    written_by: dict[str, int] = {}  # tensor -> the kernel that writes it (through views and fused epilogues)
    swish_products: set[str] = set()  # outputs of x * sigmoid(x) products fused with the kernel that wrote x
    flops: list[float] = []
    bytes_moved: list[float] = []
    weight_bytes = 0.0
    largest_activation = 0.0
    for node in graph.node:
        if node.op_type == "Shape" or not any(name in dynamic for name in node.input):
            continue  # its value is known before the first run
        dynamic.update(node.output)
        source = node.input[0]
        kernel = written_by.get(source)
        swish = _swish_product(node, readers) if kernel is not None and node.op_type == "Sigmoid" else None
        fused = kernel is not None and (
            (node.op_type in FUSED_ACTIVATIONS and len(readers[source]) == 1) or swish is not None
            or node.output[0] in swish_products)
        if node.op_type in FREE_OPS or fused:
            if kernel is not None:
                written_by[node.output[0]] = kernel
            if swish is not None:
                swish_products.add(swish)
            continue
        used = [name for name in node.input if name]
        missing = [name for name in [*used, *node.output] if name not in counts]
        if node.op_type in COMPUTE_OPS and missing:
            raise TrialError(f"the latency estimate cannot size {node.op_type} node {node.name!r}: no static shape "
                             f"for {', '.join(missing)} after shape inference")
        activations = sum(counts.get(name, 0) for name in [*used, *node.output] if name in dynamic)
        weights = sum(counts.get(name, 0) for name in used if name not in dynamic)
        flops.append(float(_compute_flops(node, shapes)) if node.op_type in COMPUTE_OPS else 0.0)
        bytes_moved.append(float(activations + weights) * element_bytes)
        weight_bytes += weights * element_bytes
        largest_activation = max(largest_activation, activations * element_bytes)
        written_by[node.output[0]] = len(flops) - 1
    if not flops:
        raise TrialError("the latency estimate found no kernels in the graph (is its input connected?)")
    return GraphFeatures(tuple(flops), tuple(bytes_moved), weight_bytes, largest_activation)


def _point_features(point: PublishedLatency, where: str) -> GraphFeatures:
    """A calibration point's graph, built with timm and exported as a search exports; cached on disk."""
    import timm

    key = (f"{point.model}_c{point.in_channels}_s{point.input_size}_b{point.batch}_{point.precision}"
           f"_timm{timm.__version__}_v{FEATURES_VERSION}")
    path = cache_dir() / f"{key}.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return GraphFeatures(tuple(stored["flops"]), tuple(stored["bytes_moved"]), stored["weight_bytes"],
                             stored["largest_activation_bytes"])
    from nas.export import to_onnx

    try:
        model = timm.create_model(point.model, pretrained=False, num_classes=1000, in_chans=point.in_channels)
    except RuntimeError:  # timm's "Unknown model"
        raise ConfigError(f"{where}: calibration.points: model {point.model!r} is not a timm model"
                          f"{did_you_mean(point.model, timm.list_models())}") from None
    with tempfile.TemporaryDirectory(prefix="nas-estimate-") as tmp:
        onnx_path = to_onnx(model, (point.in_channels, point.input_size, point.input_size), Path(tmp) / "point.onnx")
        features = graph_features(onnx_path, batch=point.batch, precision=point.precision)
    write_json(path, asdict(features))
    return features


# --- the roofline and its fit --------------------------------------------------------------------------------------

def peak_tera(sheet: SpecSheet, precision: Precision, *, where: str) -> tuple[float, str]:
    """The spec sheet's peak for `precision` (TFLOPS or TOPS) and the field it came from."""
    for field in PEAK_FALLBACKS[precision]:
        value = getattr(sheet, field)
        if value is not None:
            return value, field
    raise ConfigError(f"{where}: spec_sheet: no peak for {precision}; set one of "
                      f"{', '.join(PEAK_FALLBACKS[precision])}")


def _roofline_ms(features: GraphFeatures, peak: float, bandwidth_gbs: float, eff_compute: np.ndarray,
                 eff_memory: np.ndarray) -> np.ndarray:
    """Sum over kernels of max(compute, memory) time, for every pair of the (broadcast) efficiency arrays."""
    compute_ms = np.asarray(features.flops) / (peak * 1e9)  # TFLOPS = 1e9 FLOP per ms
    memory_ms = np.asarray(features.bytes_moved) / (bandwidth_gbs * 1e6)  # GB/s = 1e6 bytes per ms
    return np.maximum(compute_ms / eff_compute[..., None], memory_ms / eff_memory[..., None]).sum(axis=-1)


def _latency_ms(features: GraphFeatures, peak: float, bandwidth_gbs: float, eff_compute: float, eff_memory: float,
                overhead_ms: float) -> float:
    roofline = _roofline_ms(features, peak, bandwidth_gbs, np.asarray(eff_compute), np.asarray(eff_memory))
    return float(roofline) + features.kernels * overhead_ms


# Search ranges (log10). Compute cannot beat the published peak. Memory may: the byte count sends every kernel's
# inputs and outputs to DRAM, and on-chip caches serve part of that traffic. Overhead from 1 ns to 1 ms per kernel.
COMPUTE_EFFICIENCY_RANGE = (-3.0, 0.0)
MEMORY_EFFICIENCY_RANGE = (-3.0, 1.0)
OVERHEAD_RANGE_MS = (-6.0, 0.0)
GRID_POINTS = 41
REFINEMENTS = 5


def _fit_factors(features: list[GraphFeatures], peaks: list[float], bandwidth_gbs: float,
                 published_ms: np.ndarray) -> tuple[float, float, float]:
    """Least squares on log-latency over the three factors' logarithms: a grid, then finer grids around its best.

    A grid rather than a gradient method: the max() makes the loss piecewise, and a grid needs only numpy.
    """
    bounds = np.array([COMPUTE_EFFICIENCY_RANGE, MEMORY_EFFICIENCY_RANGE, OVERHEAD_RANGE_MS])
    lows, highs = bounds[:, 0].copy(), bounds[:, 1].copy()
    target = np.log(published_ms)
    kernels = np.array([f.kernels for f in features], dtype=float)
    best = np.zeros(3)
    for _ in range(REFINEMENTS):
        grids = [np.logspace(lo, hi, GRID_POINTS) for lo, hi in zip(lows, highs)]
        eff_compute, eff_memory = np.meshgrid(grids[0], grids[1], indexing="ij")
        roofline = np.stack([_roofline_ms(f, p, bandwidth_gbs, eff_compute, eff_memory)
                             for f, p in zip(features, peaks)], axis=-1)  # (compute, memory, point)
        total = roofline[:, :, None, :] + grids[2][None, None, :, None] * kernels  # (compute, memory, overhead, point)
        loss = ((np.log(total) - target) ** 2).sum(axis=-1)
        index = np.unravel_index(np.argmin(loss), loss.shape)
        best = np.array([np.log10(grids[d][index[d]]) for d in range(3)])
        step = (highs - lows) / (GRID_POINTS - 1)
        lows, highs = np.maximum(best - 2 * step, bounds[:, 0]), np.minimum(best + 2 * step, bounds[:, 1])
    eff_compute_fit, eff_memory_fit, overhead_fit = 10.0 ** best
    return float(eff_compute_fit), float(eff_memory_fit), float(overhead_fit)


def _where(profile: HardwareProfile) -> str:
    return str(profile.path or f"hardware profile {profile.name!r}")


def _require(profile: HardwareProfile, field: str, why: str) -> None:
    if getattr(profile, field) is None:
        raise ConfigError(f"{_where(profile)}: {field}: missing; {why} (hardware_profiles/jetson-orin-agx.yaml "
                          f"has one to copy from)")


def _calibrated_profile(profile: HardwareProfile) -> HardwareProfile:
    """The profile whose published latencies calibrate this one: itself, or the one named by `calibration_from`.

    A module without published latencies (Orin NX) borrows the efficiencies fitted on a sibling with the same GPU
    and memory bus (Orin Nano), and applies them with its own spec sheet (and clock, for the per-kernel overhead).
    """
    if profile.calibration_from is None:
        _require(profile, "calibration", "the latency estimate is fitted to published latencies (or name a "
                                         "calibrated profile in calibration_from)")
        return profile
    calibrated = load_profile(profile.calibration_from)
    for field in ("spec_sheet", "calibration"):
        _require(calibrated, field, f"{_where(profile)} borrows this profile's calibration fit")
    return calibrated


def fit_profile(profile: HardwareProfile) -> Fit:
    """The fitted factors the profile's estimates use (cached: fitting exports each calibration model once)."""
    _require(profile, "spec_sheet", "the latency estimate starts from the published peak and bandwidth")
    calibrated = _calibrated_profile(profile)
    return _fit(calibrated.name, _where(calibrated), calibrated.spec_sheet.model_dump_json(),
                calibrated.calibration.model_dump_json())


@cache
def _fit(profile_name: str, where: str, sheet_json: str, calibration_json: str) -> Fit:
    """Keyed by the profile's content, so a profile edited on disk is fitted again."""
    sheet = SpecSheet.model_validate_json(sheet_json)
    calibration = Calibration.model_validate_json(calibration_json)
    features = [_point_features(point, where) for point in calibration.points]
    peaks = [peak_tera(sheet, point.precision, where=where)[0] for point in calibration.points]
    published = np.array([point.p50_ms for point in calibration.points])
    eff_compute, eff_memory, overhead_ms = _fit_factors(features, peaks, sheet.memory_bandwidth_gbs, published)
    points = tuple(
        PointFit(model=point.model, input_size=point.input_size, in_channels=point.in_channels,
                 precision=point.precision, batch=point.batch, published_ms=point.p50_ms,
                 fitted_ms=_latency_ms(f, peak, sheet.memory_bandwidth_gbs, eff_compute, eff_memory, overhead_ms))
        for point, f, peak in zip(calibration.points, features, peaks)
    )
    return Fit(profile=profile_name, source=calibration.source, eff_compute=eff_compute, eff_memory=eff_memory,
               overhead_ms=overhead_ms, points=points)


@dataclass(frozen=True)
class _Pricing:
    """A profile's fit and the peak that prices one precision on it."""

    fit: Fit
    peak: float
    peak_field: str
    bandwidth_gbs: float
    overhead_ms: float
    """The fit's per-kernel overhead, scaled to this module's GPU clock when the fit is borrowed."""

    def latency_ms(self, features: GraphFeatures) -> float:
        return _latency_ms(features, self.peak, self.bandwidth_gbs, self.fit.eff_compute, self.fit.eff_memory,
                           self.overhead_ms)


def overhead_scale(profile: HardwareProfile) -> float:
    """How much longer a kernel's fixed overhead takes here than on the profile the fit was made on.

    Fitted on each module, the overhead is near constant in GPU cycles (AGX Orin 11,600 at 1.3 GHz, Orin Nano 10,200
    at 625 MHz) and not in time (8.9 vs 16.3 us), so a borrowed fit's overhead is scaled by the clock ratio.
    """
    calibrated = _calibrated_profile(profile)
    here, there = profile.spec_sheet.gpu_clock_mhz, calibrated.spec_sheet.gpu_clock_mhz
    return there / here if calibrated.name != profile.name and here and there else 1.0


def _pricing(profile: HardwareProfile, precision: Precision) -> _Pricing:
    fit = fit_profile(profile)
    peak, peak_field = peak_tera(profile.spec_sheet, precision, where=_where(profile))
    if not peak_field.startswith(precision):
        logger.warning("%s: spec_sheet has no %s peak; the estimate prices compute with %s instead",
                       _where(profile), precision, peak_field)
    return _Pricing(fit, peak, peak_field, profile.spec_sheet.memory_bandwidth_gbs,
                    fit.overhead_ms * overhead_scale(profile))


def estimate_points(profile: HardwareProfile) -> list[float]:
    """The calibration models' estimated ms on `profile`: for a borrowed fit, what they would take on this module."""
    calibrated = _calibrated_profile(profile)
    return [_pricing(profile, point.precision).latency_ms(_point_features(point, _where(calibrated)))
            for point in calibrated.calibration.points]


def estimate_ms(onnx_path: Path, profile: HardwareProfile, precision: Precision) -> float:
    """The estimated batch-`profile.batch` latency of `onnx_path` (its own per-sample input shape) on the profile."""
    features = graph_features(onnx_path, batch=profile.batch, precision=precision)
    return _pricing(profile, precision).latency_ms(features)


class EstimateBackend(LatencyBackend):
    """Prices the artifact instead of timing it, for a target that is not reachable from here (`model` unused)."""

    name = "estimate"

    def measure(
        self, onnx_path: Path, *, profile: HardwareProfile, precision: Precision, input_shape: tuple[int, ...],
        model: nn.Module | None = None,
    ) -> Measurement:
        self.check_precision(profile, precision)
        import onnx

        graph = onnx.load(str(onnx_path))
        features = graph_features(graph, batch=profile.batch, precision=precision, input_shape=input_shape)
        batched = graph_features(graph, batch=profile.throughput_batch, precision=precision, input_shape=input_shape)
        pricing = _pricing(profile, precision)
        ms = pricing.latency_ms(features)
        fit = pricing.fit
        borrowed = "" if fit.profile == profile.name else \
            f", efficiencies of {fit.profile}, overhead x{overhead_scale(profile):.2f} for the GPU clock"
        substitute = "" if pricing.peak_field.startswith(precision) else f"; {pricing.peak_field} priced {precision}"
        return Measurement(
            p50_ms=ms, p95_ms=ms, p99_ms=ms, mean_ms=ms, cv=0.0, runs=0, seconds=0.0,
            throughput_ips=profile.throughput_batch / (pricing.latency_ms(batched) / 1e3),
            throughput_batch=profile.throughput_batch,
            peak_memory_mb=(features.weight_bytes + features.largest_activation_bytes) / 2**20,
            model_bytes=Path(onnx_path).stat().st_size, backend=self.name,
            runtime_version=f"nas estimate (fit on {len(fit.points)} points of {fit.source}{borrowed}{substitute})",
            device=f"{profile.description} (estimated)", precision=precision, batch=profile.batch, threads=None,
            method="estimated", load_avg=0.0,
        )


BACKENDS.register(EstimateBackend.name, EstimateBackend)
