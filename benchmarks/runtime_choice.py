"""ONNX Runtime against OpenVINO, fp32 and int8, per model, and which one the search's per-candidate choice ships.

For --candidates architectures drawn from the X-ray space (uncompressed, seeded) at each --sizes, and the space's
four baselines, every model is exported once and timed side by side in one run on this CPU: fp32 and int8 on ONNX
Runtime (QDQ, onnxruntime.quantization) and on OpenVINO (NNCF's INT8 IR), all from the same calibration images,
under the cpu profile's protocol (or --profile). Prints p50/p95 per runtime x precision, the choice
(nas.hardware.runtime_choice.choose, fp32 and int8 allowed: INT8 only where 10% faster), the share of models whose
choice differs from ONNX Runtime fp32 with the p50 gain there, and how many timings were labelled disturbed.

The front's hypervolume (p50 latency vs AUC, per size) is computed three ways on the same timings: every model
shipped as the per-candidate choice, as ONNX Runtime alone (its fp32 or int8 by the same rule), and as ONNX
Runtime fp32. Training 48 models is too slow here, so each model's AUC is a FIXED PROXY, rising with its MACs
(PROXY_AUC_LOW for the smallest model of a size to PROXY_AUC_HIGH for the largest, by rank) and the same for fp32
and int8: the comparison measures what the runtime choice does to the latency axis, nothing about accuracy.
Example (the run in issue 21's note):

    nice -n 10 python benchmarks/runtime_choice.py --candidates 20 --sizes 28 224 \
        --profile tests/fixtures/cpu-quick.yaml --max-attempts 1 --json runtime_choice.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from nas.compress.quantize import quantize_int8, quantize_int8_openvino
from nas.export import to_onnx
from nas.hardware import load_profile, measure
from nas.hardware.runtime_choice import RuntimeTiming, choose
from nas.models import create_model
from nas.models.complexity import count_macs
from nas.search.hypervolume import hypervolume
from nas.spaces import load_space, sample_spec
from nas.spec import CompressionSpec, Spec, TrainingSpec

COMBOS = (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"))
PROXY_AUC_LOW, PROXY_AUC_HIGH = 0.80, 0.95
"""The proxy AUC's range over one size's models (rank of MACs), standing in for trained AUCs."""


def candidate_specs(space_name: str, count: int, size: int, seed: int) -> list[Spec]:
    space = load_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs = []
    for _ in range(count):
        spec = sample_spec(space, study.ask(), in_channels=1, num_classes=2)
        specs.append(spec.model_copy(update={"input_size": size, "compression": CompressionSpec()}))
    recipe = TrainingSpec(**space.training_defaults())
    baselines = [Spec(family=b.family, arch=b.arch, input_size=size, in_channels=1, num_classes=2, training=recipe,
                      baseline=b.name) for b in space.baselines]
    return specs + baselines


def time_model(spec: Spec, profile, tmp: Path, calibration: np.ndarray) -> dict:
    torch.manual_seed(0)
    model = create_model(spec).eval()
    fp32 = to_onnx(model, spec.input_shape, tmp / "fp32.onnx")
    artifacts = {("onnxruntime", "fp32"): fp32, ("openvino", "fp32"): fp32,
                 ("onnxruntime", "int8"): quantize_int8(fp32, tmp / "int8.onnx", calibration),
                 ("openvino", "int8"): quantize_int8_openvino(fp32, tmp / "int8.xml", calibration)}
    timings = [RuntimeTiming(runtime=rt, precision=prec, measurement=measure(
        artifacts[rt, prec], profile.model_copy(update={"backend": rt}), prec, spec.input_shape))
        for rt, prec in COMBOS]
    choice = choose(timings, ("fp32", "int8"))
    ort_only = choose([t for t in timings if t.runtime == "onnxruntime"], ("fp32", "int8"))
    return {"model": spec.baseline or f"{spec.family} {spec.summary()}"[:48], "size": spec.input_size,
            "macs": count_macs(model, spec.input_shape), "ort_only_p50_ms": ort_only.chosen.p50_ms,
            "timings": {f"{t.runtime} {t.precision}": {"p50_ms": t.measurement.p50_ms, "p95_ms": t.measurement.p95_ms,
                                                       "disturbed": t.measurement.disturbed,
                                                       "attempts": t.measurement.attempts}
                        for t in timings if t.measurement},
            "chosen": f"{choice.runtime} {choice.precision}", "chosen_p50_ms": choice.chosen.p50_ms}


def summarize(rows: list[dict]) -> dict:
    out = {}
    for size in sorted({r["size"] for r in rows}):
        at = [r for r in rows if r["size"] == size]
        differ = [r for r in at if r["chosen"] != "onnxruntime fp32"]
        gains = [r["timings"]["onnxruntime fp32"]["p50_ms"] / r["chosen_p50_ms"] for r in differ]
        out[size] = {"models": len(at), "differs": len(differ), "share": len(differ) / len(at),
                     "median_gain": float(np.median(gains)) if gains else None,
                     "never_slower": all(r["chosen_p50_ms"] <= r["timings"]["onnxruntime fp32"]["p50_ms"] for r in at),
                     "disturbed_timings": sum(t["disturbed"] for r in at for t in r["timings"].values()),
                     "hypervolume": front_hypervolumes(at)}
    return out


def front_hypervolumes(rows: list[dict]) -> dict[str, float]:
    """Hypervolume of (log10 p50 ms, proxy AUC) for each way of shipping `rows` (one size's models); the reference
    is 10% past the slowest ONNX Runtime fp32 p50 (in log10) and AUC 0.5."""
    ranks = np.argsort(np.argsort([r["macs"] for r in rows]))
    aucs = PROXY_AUC_LOW + (PROXY_AUC_HIGH - PROXY_AUC_LOW) * ranks / max(1, len(rows) - 1)
    ways = {"choice": [r["chosen_p50_ms"] for r in rows], "ort_only": [r["ort_only_p50_ms"] for r in rows],
            "ort_fp32": [r["timings"]["onnxruntime fp32"]["p50_ms"] for r in rows]}
    logs = {way: np.log10(p50) for way, p50 in ways.items()}
    low, high = min(v.min() for v in logs.values()), max(logs["ort_fp32"])
    reference = (high + 0.1 * (high - low), 0.5)
    return {way: hypervolume(np.column_stack([v, aucs]), ("minimize", "maximize"), reference)
            for way, v in logs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="xray")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 224])
    parser.add_argument("--profile", default="cpu", help="hardware profile (its protocol and threads)")
    parser.add_argument("--max-attempts", type=int, help="override the protocol's timings per model (1: no "
                        "retakes, still labelled disturbed: fits a loaded machine's time, at the cost of noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows and summary here")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    if args.max_attempts:
        profile = profile.model_copy(update={"protocol": profile.protocol.model_copy(
            update={"max_attempts": args.max_attempts})})
    rows = []
    started = time.monotonic()
    for size in args.sizes:
        calibration = np.random.default_rng(args.seed).standard_normal((32, 1, size, size)).astype(np.float32)
        for spec in candidate_specs(args.space, args.candidates, size, args.seed):
            with tempfile.TemporaryDirectory(prefix="nas-runtime-choice-") as tmp:
                row = time_model(spec, profile, Path(tmp), calibration)
            rows.append(row)
            cells = "  ".join(f"{k} {v['p50_ms']:7.3f}/{v['p95_ms']:7.3f}{'*' if v['disturbed'] else ' '}"
                              for k, v in row["timings"].items())
            print(f"{size:4d} {row['model'][:40]:40s} {cells}  -> {row['chosen']}", flush=True)
    summary = summarize(rows)
    print("\np50/p95 ms per runtime x precision; * = labelled disturbed after its retakes")
    for size, s in summary.items():
        gain = f", median p50 gain {s['median_gain']:.2f}x where it differs" if s["median_gain"] else ""
        print(f"{size} px: choice differs from onnxruntime fp32 for {s['differs']}/{s['models']} "
              f"({s['share']:.0%}){gain}; never slower: {s['never_slower']}; disturbed timings: "
              f"{s['disturbed_timings']}")
        hv = s["hypervolume"]
        print(f"  hypervolume (log10 p50 vs PROXY AUC by MACs rank, not trained): choice {hv['choice']:.4f}, "
              f"ONNX Runtime only {hv['ort_only']:.4f}, ONNX Runtime fp32 {hv['ort_fp32']:.4f}")
    print(f"({time.monotonic() - started:.0f} s, profile {profile.name}, threads {profile.threads or 'all'}, "
          f"max attempts {profile.protocol.max_attempts})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
