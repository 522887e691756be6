"""`nas measure MODEL --hardware P`: one model's latency record on every runtime the profile lists that can run it,
measured (here or on an agent) or estimated. MODEL is an ONNX file, an OpenVINO IR, or a folder `nas export`
wrote (its deployed file, as its io.json names it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.cli._common import add_device_options, add_json_option, print_json
from nas.errors import ConfigError
from nas.hardware import load_profile, open_target
from nas.hardware.runtime_choice import deployable_runtimes, runtime_target


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure", help="measure one ONNX model on a hardware profile", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure one ONNX model's latency under a profile's protocol and print its record.\n\n"
                    "examples:\n  nas measure model.onnx --hardware cpu\n"
                    "  nas measure shipped/xray-7 --hardware cpu        # an export folder: its deployed file\n"
                    "  nas measure model.onnx --hardware jetson-orin --device-url http://jetson:8765 "
                    "--device-token-file token\n  nas measure model.onnx --hardware jetson-orin-nano --allow-estimate")
    p.add_argument("model", type=Path, help="an ONNX file with one image input (N, C, H, W; N may be dynamic), an "
                                            "OpenVINO IR (.xml beside its .bin), or a folder `nas export` wrote")
    p.add_argument("--hardware", default="cpu", help="hardware profile name or YAML path (see `nas profiles`)")
    p.add_argument("--precision", help="fp32, fp16 or int8 (default: int8 for a quantized (QDQ) file, else the "
                                       "profile's first)")
    p.add_argument("--batch", type=int, help="batch size (default: the profile's)")
    add_device_options(p)
    add_json_option(p)
    p.set_defaults(func=run)


def input_shape(path: Path) -> tuple[int, ...]:
    import onnx

    if not path.is_file():
        raise ConfigError(f"no such ONNX file: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf decode errors have many types
        raise ConfigError(f"{path} is not an ONNX model: {exc}") from None
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:] if inputs else []
    if len(inputs) != 1 or not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"{path}: expected one input with a static (C, H, W) after the batch axis")
    return tuple(dims)


def ir_input_shape(path: Path) -> tuple[int, ...]:
    from nas.hardware.openvino_cpu import import_openvino

    if not path.is_file() or not path.with_suffix(".bin").is_file():
        raise ConfigError(f"{path}: an OpenVINO IR is an .xml beside its .bin; "
                          f"{'the .bin is' if path.is_file() else 'it is'} missing")
    shape = import_openvino().Core().read_model(str(path)).inputs[0].get_partial_shape()
    dims = [d.get_length() if d.is_static else 0 for d in list(shape)[1:]]
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"{path}: expected one input with a static (C, H, W) after the batch axis")
    return tuple(dims)


def model_to_measure(path: Path) -> tuple[Path, tuple[int, ...], str | None, str | None]:
    """(file, input shape, precision, runtime): an export folder's deployed file as its io.json describes it,
    an IR (OpenVINO only), or an ONNX file (runtime None: any the profile lists)."""
    if path.is_dir():
        io_path = path / "io.json"
        if not io_path.is_file():
            raise ConfigError(f"{path} is a folder without io.json: pass a folder `nas export` wrote, or a model file")
        io = json.loads(io_path.read_text())
        file = path / io["file"]
        if not file.is_file():
            raise ConfigError(f"{io_path} names deployed file {io['file']!r}, which is not in {path}")
        return file, tuple(io["input_shape"][1:]), io.get("precision"), "openvino" if file.suffix == ".xml" else None
    if path.suffix == ".xml":
        return path, ir_input_shape(path), None, "openvino"
    return path, input_shape(path), None, None


def file_precision(path: Path) -> str | None:
    """int8 for a quantized ONNX file (QuantizeLinear/DequantizeLinear nodes), else None: the file does not say."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return "int8" if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in graph.node) \
        else None


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.hardware)
    if args.batch is not None:
        if args.batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {args.batch}")
        profile = profile.model_copy(update={"batch": args.batch})
    model, shape, deployed_precision, runtime = model_to_measure(args.model)
    precision = (args.precision or deployed_precision or (file_precision(model) if model.suffix == ".onnx" else None)
                 or profile.precisions[0])
    if precision not in profile.precisions:
        raise ConfigError(f"--precision {precision} is not one of profile {profile.name!r}'s precisions: "
                          f"{', '.join(profile.precisions)}")
    target = open_target(profile, device_url=args.device_url, token_file=args.device_token_file,
                         ca_file=args.device_ca_file, allow_estimate=args.allow_estimate, any_device=args.any_device)
    if target.needs_model:
        raise ConfigError(f"profile {profile.name!r} times the PyTorch model ({profile.backend}), not an ONNX file; "
                          "measure a trial through nas search / nas export, or use an ONNX profile")
    runtimes = deployable_runtimes(target)
    if runtime is not None:
        if runtime not in runtimes:
            raise ConfigError(f"{model} runs on {runtime} only, which profile {profile.name!r} does not list "
                              f"(its runtimes: {', '.join(runtimes)})")
        runtimes = [runtime]
    runs = [runtime_target(target, r).measure(model, precision, shape)  # type: ignore[arg-type]
            for r in runtimes]
    fastest = min(runs, key=lambda m: m.p50_ms)
    if args.json:
        print_json({"model": str(model), "hardware": profile.name, "input_shape": list(shape),
                    "measurement": runs[0].model_dump(), "runtimes": [m.model_dump() for m in runs],
                    "fastest": fastest.backend})
        return 0
    for m in runs:
        label = " (ESTIMATED)" if m.method == "estimated" else ""
        disturbed = f"; DISTURBED: {m.disturbance.reason}" if m.disturbance and m.disturbance.gave_up else ""
        print(f"{model}: p50 {m.p50_ms:.3f} ms, p95 {m.p95_ms:.3f} ms, p99 {m.p99_ms:.3f} ms{label}")
        print(f"  {m.backend} ({m.runtime_version}), {m.precision}, batch {m.batch}, {m.method} on {m.device}")
        if m.throughput_ips:
            print(f"  throughput {m.throughput_ips:.0f} images/s at batch {m.throughput_batch}; cv {m.cv:.3f}, "
                  f"{m.runs} runs, {m.attempts} timing(s){disturbed}")
    if len(runs) > 1:
        print(f"fastest: {fastest.backend} (p50 {fastest.p50_ms:.3f} ms)")
    return 0
