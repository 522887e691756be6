"""Measurements reused across trials and studies: a latency depends on the graph's shapes, the profile, the
precision and the machine, never on the weights, so the same shapes are timed once per machine."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import onnx
from torch import nn

from nas._io import write_json
from nas.hardware._measurement import Measurement
from nas.hardware._target import Target
from nas.hardware.device_info import local_device_info
from nas.spec import Precision

SHAPE_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
"""Integer initializers keep their values in the digest: they are shapes and axes (Reshape targets), not weights
(INT8 weights and zero points are INT8/UINT8)."""


def graph_digest(onnx_path: Path) -> str:
    """SHA-256 of the ONNX graph without its weight values: equal for two exports of one architecture (and one
    precision) whatever their training or calibration. An OpenVINO IR keeps its graph in the .xml and its values
    in the .bin, so the .xml is the digest, without the names OpenVINO numbers from a per-process counter."""
    if Path(onnx_path).suffix == ".xml":
        graph = re.sub(rb' name="[^"]*"', b"", Path(onnx_path).read_bytes())
        return hashlib.sha256(graph).hexdigest()
    model = onnx.load(str(onnx_path), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.data_type not in SHAPE_TYPES:
            for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                         "string_data"):
                tensor.ClearField(name)
    model.ClearField("producer_version")
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def machine_fingerprint(target: Target) -> dict[str, object]:
    """What identifies the machine that times: this one's device and runtime versions, or the remote agent."""
    if target.how == "remote":
        return {"how": "remote", "device_url": target.device_url, "device": target.device, "runtime": target.runtime}
    info = local_device_info()
    return {"how": target.how, "device": info["device"], "cpu": info["cpu"], "hostname": info["hostname"],
            "runtimes": info["runtimes"]}


class MeasurementCache:
    """One JSON file per key under `root`; a reused record says where it was first measured."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.measured = 0
        self.reused = 0

    def key(self, target: Target, onnx_path: Path, precision: Precision, input_shape: tuple[int, ...]) -> str:
        parts = {"graph": graph_digest(onnx_path), "profile": target.profile.model_dump(mode="json"),
                 "precision": precision, "input_shape": list(input_shape), "machine": machine_fingerprint(target)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def measure(self, target: Target, onnx_path: Path, precision: Precision, input_shape: tuple[int, ...],
                model: nn.Module | None = None, *, origin: str = "") -> Measurement:
        """The cached record for these shapes on this machine, else a new measurement (then cached).

        Estimates are not cached: they cost nothing and must follow the profile's calibration."""
        if target.how == "estimate":
            return target.measure(onnx_path, precision, input_shape, model)
        path = self.root / f"{self.key(target, onnx_path, precision, input_shape)}.json"
        if path.exists():
            try:
                record = json.loads(path.read_text())
                self.reused += 1
                return Measurement.model_validate(record["measurement"]).model_copy(
                    update={"reused_from": f"{record['origin']} ({record['measured_at']})"})
            except (ValueError, KeyError):
                pass  # a damaged record is measured again and overwritten
        measurement = target.measure(onnx_path, precision, input_shape, model)
        self.measured += 1
        write_json(path, {"measurement": measurement.model_dump(), "origin": origin or str(onnx_path),
                          "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return measurement
