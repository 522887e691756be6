"""OpenVINO on the local CPU: the other runtime a CPU clinic deploys with (settled point 19).

Times the same ONNX file as ONNX Runtime (or an OpenVINO IR, which NNCF's INT8 quantization writes) through the
same timer process, protocol, threads and provenance, so the two compare number for number. OpenVINO is
imported only when used, as TensorRT is.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from nas.errors import ConfigError
from nas.hardware._backend import BACKENDS
from nas.hardware._profile import HardwareProfile
from nas.hardware.onnxruntime_cpu import LocalCPUBackend

INSTALL_HINT = "pip install openvino"


def openvino_version() -> str | None:
    """The installed OpenVINO's version, without importing it (None: not installed)."""
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None


def import_openvino():  # type: ignore[no-untyped-def]
    try:
        import openvino
    except ImportError as exc:
        raise ConfigError(f"OpenVINO is not installed here ({exc}); {INSTALL_HINT}") from None
    return openvino


def write_ir(onnx_path: Path, out: Path) -> Path:
    """OpenVINO's IR of `onnx_path` (`out` .xml beside its .bin), weights kept in fp32 (OpenVINO would store
    them in fp16 by default, which is not the float model that was measured and verified)."""
    ov = import_openvino()
    ov.save_model(ov.convert_model(str(onnx_path)), str(out), compress_to_fp16=False)
    return out


class OpenVINOCPU(LocalCPUBackend):
    name = "openvino"
    label = "OpenVINO"

    @classmethod
    def unavailable(cls, profile: HardwareProfile) -> str | None:
        return None if openvino_version() else f"OpenVINO is not installed here ({INSTALL_HINT})"


BACKENDS.register(OpenVINOCPU.name, OpenVINOCPU)
