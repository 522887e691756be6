"""Hardware profiles and latency backends: measure the deployed artifact on the target, never FLOPs alone."""

from nas.hardware._backend import BACKENDS, LatencyBackend, create_backend, measure
from nas.hardware._measurement import Measurement, cpu_name
from nas.hardware._profile import HardwareProfile, Protocol, list_profiles, load_profile

# Backends are imported explicitly so a missing one fails loudly.
from nas.hardware import onnxruntime_cpu as _onnxruntime_cpu  # noqa: E402,F401

__all__ = [
    "BACKENDS", "HardwareProfile", "LatencyBackend", "Measurement", "Protocol", "cpu_name", "create_backend",
    "list_profiles", "load_profile", "measure",
]
