"""Hardware profiles and latency backends: measure the deployed artifact on the target, never FLOPs alone."""

from nas.hardware._backend import BACKENDS, LatencyBackend, create_backend, measure
from nas.hardware._measurement import Measurement, cpu_name
from nas.hardware._profile import HardwareProfile, Protocol, list_profiles, load_profile
from nas.hardware._target import Target, open_target

# Backends are imported explicitly so a missing one fails loudly.
from nas.hardware import onnxruntime_cpu as _onnxruntime_cpu  # noqa: E402,F401
from nas.hardware import openvino_cpu as _openvino_cpu  # noqa: E402,F401
from nas.hardware import tensorrt_backend as _tensorrt  # noqa: E402,F401
from nas.hardware import torch_cuda as _torch_cuda  # noqa: E402,F401
from nas.hardware import estimate as _estimate  # noqa: E402,F401

__all__ = [
    "BACKENDS", "HardwareProfile", "LatencyBackend", "Measurement", "Protocol", "cpu_name", "create_backend",
    "Target", "list_profiles", "load_profile", "measure", "open_target",
]
