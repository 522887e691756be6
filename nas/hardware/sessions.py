"""Run a deployed artifact on the local CPU with the runtime it ships with (settled point 19): one factory, so
parity checks, `nas predict` and `nas evaluate` run what was measured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from nas.errors import ConfigError

Session = Callable[[np.ndarray], np.ndarray]
"""Takes a float32 batch (N, C, H, W), returns the first output."""
RUNTIMES = ("onnxruntime", "openvino")


def open_session(path: Path, runtime: str = "onnxruntime", *, threads: int | None = None) -> Session:
    """A callable running `path` (ONNX, or an OpenVINO IR .xml) with `runtime` on this CPU."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: np.asarray(session.run(None, {name: x})[0])
    if runtime == "openvino":
        from nas.hardware.openvino_cpu import import_openvino

        ov = import_openvino()
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        return lambda x: np.asarray(compiled(x)[0])
    raise ConfigError(f"runtime {runtime!r} cannot run {path} here; runtimes: {', '.join(RUNTIMES)}")
