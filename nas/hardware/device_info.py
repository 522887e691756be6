"""What this machine is and which runtimes it has, so a profile can be matched to it (settled point 5).

The measurement agent answers `/info` with this, and a search compares it with its hardware profile before sending
models. Heavy runtimes (torch, TensorRT) are imported only when asked, and the answer is kept for the process's
life, except the Jetson power mode, which `nvpmodel` can change while the agent runs.
"""

from __future__ import annotations

import copy
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from nas.hardware._backend import BACKENDS
from nas.hardware._measurement import cpu_name

JETSON_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def local_device_info() -> dict[str, Any]:
    """This machine's device, device kind, runtimes with versions and precisions, and (on a Jetson) power mode."""
    info = copy.deepcopy(_static_info())
    info["power_mode"] = _jetson_power_mode() if info["device_kind"] == "jetson" else None
    return info


@lru_cache(maxsize=1)
def _static_info() -> dict[str, Any]:
    runtimes = _runtimes()
    cuda_gpu = _cuda_device_name() if "torch-cuda" in runtimes else None
    jetson_model = _jetson_model()
    if jetson_model is not None:
        kind, device = "jetson", jetson_model  # the board ("NVIDIA Jetson AGX Orin ..."); torch says only "Orin"
    elif cuda_gpu is not None:
        kind, device = "cuda-gpu", cuda_gpu
    else:
        kind, device = "cpu", cpu_name()  # what the ONNX Runtime backend records as a measurement's device
    return {
        "device": device,
        "device_kind": kind,
        "runtimes": runtimes,
        "precisions": {name: list(BACKENDS.get(name).precisions) for name in runtimes},
        "cpu": cpu_name(),
        "hostname": platform.node(),
    }


def _runtimes() -> dict[str, str]:
    """Runtime name -> version, for the runtimes that import here."""
    found: dict[str, str] = {}
    try:
        import onnxruntime

        found["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    from nas.hardware.openvino_cpu import openvino_version

    if openvino_version():
        found["openvino"] = openvino_version()  # type: ignore[assignment]
    try:
        import torch

        if torch.cuda.is_available():
            found["torch-cuda"] = f"{torch.__version__} CUDA {torch.version.cuda}"
    except ImportError:
        pass
    try:
        import tensorrt

        found["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return found


def _cuda_device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def _jetson_model() -> str | None:
    """The board's name ('NVIDIA Jetson AGX Orin Developer Kit') on a Jetson, else None."""
    if DEVICE_TREE_MODEL.exists():
        model = DEVICE_TREE_MODEL.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
        if "jetson" in model.lower():
            return model
    return "NVIDIA Jetson" if JETSON_RELEASE.exists() else None


def _jetson_power_mode() -> str | None:
    """The nvpmodel mode ('MAXN', '15W'): a Jetson's latency depends on it, so measurements should say which."""
    if shutil.which("nvpmodel") is None:
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if "power mode" in line.lower() and ":" in line:
            return line.split(":", 1)[1].strip()
    return out.strip().splitlines()[0] if out.strip() else None
