"""A latency predictor fitted on this device's own measurements, in the manner of nn-Meter and LitePred.

A model's latency is the sum of what its kernels cost, and a kernel is what the runtime really executes: the graph
ONNX Runtime runs after its optimisations at the level the timing backend uses (BatchNorm folded into convolutions,
activations fused into them, NCHWc reorders inserted, QDQ pairs turned into QLinear kernels), saved through
`SessionOptions.optimized_model_filepath`. The exported graph is not what runs: a Conv, its BatchNorm and its ReLU are
three nodes there and one kernel here, and that difference is most of a tiny model's time, which goes to per-kernel
overhead rather than arithmetic (see benchmarks/latency_predictor.py).

Each kernel is sorted into a kind (pointwise, depthwise or dense convolution, gemm, pooling, element-wise, layout
reorder, (de)quantization, view) and each kind contributes its count, MFLOPs and MB moved; the latency is a
non-negative linear function of those plus one per-call intercept, fitted by non-negative least squares on
relative error (a +-10% target weighs a 0.05 ms model like a 5 ms one) with a small ridge chosen by leave-one-out.
Shapes and element sizes come from running the optimised graph once on zeros, since ONNX shape inference does not
know ONNX Runtime's contrib kernels. `nas.hardware.estimate` prices a graph for a device that cannot be reached, from
published numbers; this module needs measurements of the device itself (`nas calibrate --measure`). The kernels are
always read from this machine's ONNX Runtime: for a remote device or OpenVINO they describe the model, not exactly
what that runtime runs (another CPU may get no NCHWc reorders), and the fit absorbs the difference per kind.
Every estimate it makes says `method: estimated` and names the predictor.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from nas._io import atomic_write_text
from nas.errors import ConfigError, TrialError
from nas.hardware._measurement import Measurement
from nas.hardware.estimate import FREE_OPS
from nas.spec import Precision

if TYPE_CHECKING:
    import onnx

SCHEMA_VERSION = 1
KINDS = ("conv1x1", "dwconv", "conv", "gemm", "pool", "elementwise", "reorder", "quantize", "view")
"""Kernel kinds; a convolution whose output is 1x1 in space (a squeeze-excitation layer) is a gemm. Splitting each
convolution kind by layout (ONNX Runtime's blocked NCHWc kernels vs plain ones, which pruned odd channel counts
get) was tried on the 28-px benchmark's 70 timings: leave-one-out within +-10% 31% either way, so it is not done."""
MEASURES = ("count", "mflop", "mbyte")
FEATURES = ("intercept", *(f"{kind}.{measure}" for kind in KINDS for measure in MEASURES))
GraphKind = Literal["optimized", "exported"]
RIDGE_GRID = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1)
"""Ridge strengths tried (on columns scaled to at most 1): the one with the lowest leave-one-out error is kept."""
POOL_OPS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool", "ReduceMean", "ReduceMax",
                      "QLinearGlobalAveragePool", "QLinearAveragePool"})
REORDER_OPS = frozenset({"ReorderInput", "ReorderOutput", "Transpose"})
QUANTIZE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
GEMM_OPS = frozenset({"Gemm", "MatMul", "FusedMatMul", "FusedGemm", "QGemm", "QLinearMatMul", "MatMulInteger",
                      "MatMulIntegerToFloat"})
CONV_WEIGHT_INPUT = {"QLinearConv": 3}
"""Where a convolution's weight is among its inputs, where not second (X, W, ...)."""


# --- kernels of the graph that runs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelFeatures:
    """Per kernel kind: how many kernels, their MFLOPs and the MB they read and write (weights included)."""

    by_kind: dict[str, tuple[float, float, float]]

    def vector(self) -> np.ndarray:
        """The predictor's inputs, in FEATURES order."""
        return np.array([1.0, *(v for kind in KINDS for v in self.by_kind.get(kind, (0.0, 0.0, 0.0)))])

    @property
    def kernels(self) -> int:
        return int(sum(v[0] for v in self.by_kind.values()))


def optimized_graph(onnx_path: Path, *, batch: int) -> onnx.ModelProto:
    """The graph ONNX Runtime executes for `onnx_path` at `batch`, at the level the timing backend uses (all)."""
    import onnx
    import onnxruntime as ort

    model = _fixed_batch(onnx.load(str(onnx_path)), batch)
    with tempfile.TemporaryDirectory(prefix="nas-predictor-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3  # the "hardware specific optimizations" warning is why we do this
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def kernel_features(onnx_path: Path, *, batch: int = 1, graph: GraphKind = "optimized") -> KernelFeatures:
    """The kernels of `onnx_path` at `batch`: of ONNX Runtime's optimised graph, or (to compare) the exported one."""
    import onnx

    model = optimized_graph(onnx_path, batch=batch) if graph == "optimized" else onnx.load(str(onnx_path))
    return features_of(model, batch=batch)


def features_of(model: onnx.ModelProto, *, batch: int = 1) -> KernelFeatures:
    """Sort every node of a graph (run at `batch`) into its kind, with its FLOPs and bytes."""
    from onnx import helper, numpy_helper

    model = _fixed_batch(model, batch)
    tensors = _run_shapes(model)
    for init in model.graph.initializer:
        tensors[init.name] = (tuple(init.dims), numpy_helper.to_array(init).itemsize if init.dims else 4)
    totals = {kind: np.zeros(3) for kind in KINDS}
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        out_shape = tensors.get(node.output[0], ((),))[0]
        kind, flops = _kind_and_flops(node.op_type, attrs, [tensors.get(i, ((), 0))[0] for i in node.input],
                                      out_shape)
        moved = sum(int(np.prod(s, dtype=np.int64)) * size for s, size in
                    (tensors.get(name, ((0,), 0)) for name in [*node.input, *node.output] if name))
        totals[kind] += (1.0, flops / 1e6, moved / 2**20)
    return KernelFeatures({kind: tuple(float(x) for x in v) for kind, v in totals.items()})  # type: ignore[misc]


def _kind_and_flops(op: str, attrs: dict, inputs: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[str, float]:
    if "Conv" in op and op not in REORDER_OPS:
        weight = inputs[CONV_WEIGHT_INPUT.get(op, 1)]
        flops = 2.0 * np.prod(out, dtype=np.float64) * np.prod(weight[1:], dtype=np.float64)
        if np.prod(out[2:], dtype=np.int64) == 1:
            return "gemm", flops
        if attrs.get("group", 1) > 1 and len(weight) > 1 and weight[1] == 1:
            return "dwconv", flops
        return ("conv1x1" if all(k == 1 for k in weight[2:]) else "conv"), flops
    if op in GEMM_OPS:
        reduced = inputs[0][-2] if attrs.get("transA") else inputs[0][-1]
        return "gemm", 2.0 * np.prod(out, dtype=np.float64) * reduced
    if op in POOL_OPS:
        return "pool", float(np.prod(inputs[0], dtype=np.float64))
    if op in REORDER_OPS:
        return "reorder", 0.0
    if op in QUANTIZE_OPS:
        return "quantize", float(np.prod(out, dtype=np.float64))
    if op in FREE_OPS:
        return "view", 0.0
    return "elementwise", float(np.prod(out, dtype=np.float64))


def _fixed_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy whose one input has `batch` on its first axis (the export's axis is dynamic)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise TrialError(f"the latency predictor needs a graph with one input, got {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_value = batch
    if not all(d.dim_value > 0 for d in dims):
        raise TrialError(f"the latency predictor needs a static (C, H, W) input, got "
                         f"{[d.dim_value or d.dim_param for d in dims]}")
    return model


def _run_shapes(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """Every tensor's shape and element size, from one run on zeros of the graph as it is (optimisations off)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    outputs = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in node.output if n and n not in outputs)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    x = np.zeros(spec.shape, np.float32)
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {spec.name: x})
    return {spec.name: (tuple(x.shape), x.itemsize),
            **{name: (tuple(np.shape(v)), np.asarray(v).itemsize) for name, v in zip(names, values)}}


# --- the fit -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CalibrationPoint:
    """One measured candidate: its kernels and its measured p50."""

    name: str
    features: KernelFeatures
    measured_ms: float


class PredictorProvenance(BaseModel):
    """Where the measurements a predictor was fitted on came from: it predicts that device and runtime only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hardware: str
    device: str
    runtime: str
    runtime_version: str
    precision: Precision
    threads: int | None
    batch: int
    points: int
    fitted_at: str
    """UTC, ISO 8601."""
    method: str = "measured"
    """How the fitted points' latencies were taken: measured here, or remote (through an agent)."""
    space: str | None = None
    image_size: int | None = None
    """The images' size the space was narrowed to (input sizes above it not drawn)."""
    sessions: int = 1
    """Fresh processes each point was timed in, the fastest kept (the profile's protocol.sessions)."""


class LatencyPredictor(BaseModel):
    """Non-negative per-kernel-kind costs (ms per kernel, per MFLOP, per MB) and a per-call intercept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    graph: GraphKind = "optimized"
    coefficients: dict[str, float]
    """FEATURES name -> ms per unit; 'intercept' is ms per call."""
    ridge: float
    provenance: PredictorProvenance

    @property
    def name(self) -> str:
        p = self.provenance
        return (f"nas latency predictor ({p.points} {p.method} points, {p.runtime_version} {p.precision} on "
                f"{p.device}, {p.fitted_at[:10]})")

    def predict_features(self, features: KernelFeatures) -> float:
        return float(features.vector() @ np.array([self.coefficients[f] for f in FEATURES]))

    def predict_ms(self, onnx_path: Path) -> float:
        """The predicted p50 of `onnx_path` at the batch the predictor was fitted at."""
        return self.predict_features(kernel_features(onnx_path, batch=self.provenance.batch, graph=self.graph))

    def estimate(self, onnx_path: Path) -> Measurement:
        """A latency record for `onnx_path`, labelled as an estimate by this predictor (nothing was timed)."""
        p = self.provenance
        ms = self.predict_ms(onnx_path)
        size = Path(onnx_path).stat().st_size
        return Measurement(  # memory: the weights, which dominate at batch 1 (activations are not predicted)
            p50_ms=ms, p95_ms=ms, p99_ms=ms, mean_ms=ms, cv=0.0, runs=0, seconds=0.0, throughput_ips=None,
            throughput_batch=None, peak_memory_mb=size / 2**20, model_bytes=size, backend="estimate",
            runtime_version=self.name, device=f"{p.device} (estimated)", precision=p.precision, batch=p.batch,
            threads=p.threads, method="estimated", load_avg=0.0,
        )

    def save(self, path: Path) -> Path:
        return atomic_write_text(Path(path), self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> LatencyPredictor:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no latency predictor at {path}: fit one with `nas calibrate --measure N --holdout M`")
        predictor = cls.model_validate_json(path.read_text())
        if predictor.schema_version != SCHEMA_VERSION:
            raise ConfigError(f"{path}: latency predictor schema_version {predictor.schema_version}, this nas reads "
                              f"{SCHEMA_VERSION}; fit it again with `nas calibrate --measure`")
        return predictor


def fit_predictor(points: Sequence[CalibrationPoint], *, provenance: PredictorProvenance | None = None,
                  graph: GraphKind = "optimized") -> LatencyPredictor:
    """Non-negative least squares on relative error, with the ridge that predicts left-out points best."""
    if len(points) < 2:
        raise ConfigError(f"a latency predictor needs at least 2 measured points, got {len(points)}")
    if any(not p.measured_ms > 0 for p in points):
        raise ConfigError("every measured latency must be above 0 ms")
    x = np.stack([p.features.vector() for p in points])
    y = np.array([p.measured_ms for p in points])
    ridge = min(RIDGE_GRID, key=lambda r: _loo_error(x, y, r))
    theta = _solve(x, y, ridge)
    provenance = provenance or PredictorProvenance(
        hardware="unknown", device="unknown", runtime="unknown", runtime_version="unknown", precision="fp32",
        threads=None, batch=1, points=len(points), fitted_at=utc_now())
    return LatencyPredictor(graph=graph, coefficients=dict(zip(FEATURES, map(float, theta))), ridge=ridge,
                            provenance=provenance)


def _solve(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """min sum((x theta / y - 1)^2) + ridge |scaled theta without intercept|^2, theta >= 0."""
    from scipy.optimize import nnls

    relative = x / y[:, None]
    scale = np.abs(relative).max(axis=0)
    scale[scale == 0] = 1.0
    a, b = relative / scale, np.ones(len(y))
    if ridge:
        penalty = np.sqrt(ridge) * np.eye(x.shape[1])[1:]  # the per-call intercept is not shrunk
        a, b = np.vstack([a, penalty]), np.concatenate([b, np.zeros(len(penalty))])
    beta, _ = nnls(a, b, maxiter=50 * x.shape[1])
    return beta / scale


def _loo_error(x: np.ndarray, y: np.ndarray, ridge: float) -> float:
    """Mean squared relative error of each point predicted by a fit on the others."""
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errors.append((x[i] @ _solve(x[keep], y[keep], ridge) / y[i] - 1.0) ** 2)
    return float(np.mean(errors))


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def predictor_path(results: Path, hardware: str, runtime: str, precision: str) -> Path:
    """Where `nas calibrate --measure` keeps a device's fit: results/calibration/<hardware>-<runtime>-<precision>.json."""
    return Path(results) / "calibration" / f"{hardware}-{runtime}-{precision}.json"


__all__ = ["CalibrationPoint", "FEATURES", "KINDS", "KernelFeatures", "LatencyPredictor", "PredictorProvenance",
           "features_of", "fit_predictor", "kernel_features", "optimized_graph", "predictor_path"]
