"""What each compression step costs and gains, per model, measured in one run on this machine.

For the search space's baselines (and, with --study, a few searched members rebuilt from their specs) each model is
trained once with the space's shared recipe, then shipped five ways, all through the same code the search uses:

    fp32          the trained model
    pruned        structured pruning at --prune-ratio (channels removed) + --finetune-epochs of fine-tuning
    int8          ONNX Runtime static QDQ INT8 of fp32, calibrated on training images
    pruned+int8   both
    pruned+kd     pruned, fine-tuned with distillation from its own fp32 model (T 4, alpha 0.5)

For each: params, MACs, p50/p95 latency (the cpu profile's backend and protocol) and validation AUC of the ONNX
artifact, with ratios to fp32. A second table times ResNet-18 at 224x224 (latency needs no training): fp32,
pruned at --prune-ratio, int8 and pruned+int8. Example (the run in issue 3's note):

    python benchmarks/compression_effects.py --epochs 4 --finetune-epochs 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from nas.compress import build_model, load_model, plan_channels, prune_to_channels, quantize_int8
from nas.compress.quantize import CALIBRATION_IMAGES
from nas.export import to_onnx
from nas.hardware import load_profile, measure
from nas.models import create_model
from nas.models.complexity import count_macs, count_params
from nas.spaces import load_space
from nas.spec import CompressionSpec, Spec, TrainingSpec
from nas.tasks import get_task
from nas.train import Distillation

VARIANTS = ("fp32", "pruned", "int8", "pruned+int8", "pruned+kd")


def baseline_specs(space_name: str, epochs: int, input_size: int | None) -> list[Spec]:
    space = load_space(space_name)
    recipe = TrainingSpec(**{**space.training_defaults(), "epochs": epochs})
    return [Spec(family=b.family, arch=b.arch, input_size=input_size or b.input_size or space.baseline_input_size(),
                 in_channels=1, num_classes=2, training=recipe, baseline=b.name) for b in space.baselines]


def study_specs(results: Path, study: str, trials: list[int], epochs: int) -> list[Spec]:
    """Searched members, uncompressed, so every variant starts from the same float architecture."""
    specs = []
    for number in trials:
        spec = Spec.load(results / study / "trials" / str(number) / "spec.json")
        specs.append(spec.model_copy(update={
            "compression": CompressionSpec(), "training": spec.training.model_copy(update={"epochs": epochs}),
            "baseline": f"trial {number}"}))
    return specs


def with_channels(spec: Spec, model: torch.nn.Module, ratio: float, multiple: int) -> Spec:
    channels = plan_channels(model, spec, ratio, multiple)
    return spec.model_copy(update={"compression": CompressionSpec(prune_ratio=ratio, channels=channels)})


def row(name: str, spec: Spec, model: torch.nn.Module, onnx_path: Path, precision: str, auc: float | None,
        profile) -> dict:
    m = measure(onnx_path, profile, precision, spec.input_shape)
    return {"model": name, "params": count_params(model), "macs": count_macs(model, spec.input_shape),
            "p50_ms": m.p50_ms, "p95_ms": m.p95_ms, "val_auc": auc,
            "device": f"{m.device}, {m.backend} {m.runtime_version}, {m.threads or 'default'} threads"}


def evaluate_model(args, task, dataset, profile, spec: Spec, tmp: Path) -> list[dict]:
    name = spec.baseline or spec.family
    val = lambda path: task.evaluate(path, spec, dataset, "val", threshold=None, target_sensitivity=0.95)["auc"]  # noqa: E731
    calibration = task.sample_inputs(spec, dataset, CALIBRATION_IMAGES, "train").numpy()
    torch.manual_seed(args.seed)
    model = create_model(spec)
    started = time.monotonic()
    task.train(model, spec, dataset, seed=args.seed, deadline=None)
    torch.save(model.state_dict(), tmp / "fp32.pt")
    fp32 = to_onnx(model, spec.input_shape, tmp / "fp32.onnx")
    int8 = quantize_int8(fp32, tmp / "int8.onnx", calibration)
    rows = {"fp32": row(name, spec, model, fp32, "fp32", val(fp32), profile),
            "int8": row(name, spec, model, int8, "int8", val(int8), profile)}

    pruned_spec = with_channels(spec, model, args.prune_ratio, profile.channel_multiple)
    recipe = spec.training.model_copy(update={"epochs": args.finetune_epochs, "lr": spec.training.lr * 0.1})
    teacher = model
    with torch.no_grad():
        inputs = task.sample_inputs(spec, dataset, None, "train")
        teacher_logits = torch.cat([teacher(inputs[i:i + 256]) for i in range(0, len(inputs), 256)])
    for variant, distill in (("pruned", None), ("pruned+kd", Distillation(teacher_logits, 4.0, 0.5))):
        student = load_model(spec, tmp / "fp32.pt").train()
        prune_to_channels(student, pruned_spec, pruned_spec.compression.channels)
        task.train(student, pruned_spec, dataset, seed=args.seed + 1, deadline=None, recipe=recipe, distill=distill)
        path = to_onnx(student, spec.input_shape, tmp / f"{variant}.onnx")
        rows[variant] = row(name, pruned_spec, student, path, "fp32", val(path), profile)
        if variant == "pruned":
            q = quantize_int8(path, tmp / "pruned-int8.onnx", calibration)
            rows["pruned+int8"] = row(name, pruned_spec, student, q, "int8", val(q), profile)
    print(f"  {name}: trained, pruned and quantized in {time.monotonic() - started:.0f} s", flush=True)
    return [{"variant": v, **rows[v]} for v in VARIANTS]


def resnet_224(args, profile, tmp: Path) -> list[dict]:
    recipe = TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0)
    spec = Spec(family="resnet", arch={"variant": "resnet18"}, input_size=224, in_channels=1, num_classes=2,
                training=recipe, baseline="resnet18@224")
    torch.manual_seed(args.seed)
    model = create_model(spec).eval()
    pruned_spec = with_channels(spec, model, args.prune_ratio, profile.channel_multiple)
    pruned = build_model(pruned_spec).eval()
    calibration = torch.randn(32, *spec.input_shape).numpy()  # scales do not change speed
    fp32, small = to_onnx(model, spec.input_shape, tmp / "r224.onnx"), to_onnx(pruned, spec.input_shape, tmp / "r224p.onnx")
    files = {"fp32": (model, fp32, "fp32"), "pruned": (pruned, small, "fp32"),
             "int8": (model, quantize_int8(fp32, tmp / "r224-int8.onnx", calibration), "int8"),
             "pruned+int8": (pruned, quantize_int8(small, tmp / "r224p-int8.onnx", calibration), "int8")}
    return [{"variant": v, **row(spec.baseline, spec, m, path, precision, None, profile)}  # type: ignore[arg-type]
            for v, (m, path, precision) in files.items()]


def print_table(rows: list[dict]) -> None:
    header = (f"{'model':<24} {'variant':<12} {'params':>10} {'MMACs':>8} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'val AUC':>8} {'p50 x':>7} {'MACs x':>7} {'dAUC':>8}")
    print(header)
    print("-" * len(header))
    base: dict = {}
    for r in rows:
        if r["variant"] == "fp32":
            base = r
        auc = "n/a" if r["val_auc"] is None else f"{r['val_auc']:.4f}"
        dauc = "n/a" if r["val_auc"] is None else f"{r['val_auc'] - base['val_auc']:+.4f}"
        print(f"{r['model'][:24]:<24} {r['variant']:<12} {r['params']:>10,} {r['macs'] / 1e6:>8.1f} "
              f"{r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {auc:>8} {base['p50_ms'] / r['p50_ms']:>6.2f}x "
              f"{base['macs'] / r['macs']:>6.2f}x {dauc:>8}")
    print("p50 x / MACs x: fp32 over the variant (above 1 = faster / fewer); dAUC: variant minus fp32")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="xray")
    parser.add_argument("--hardware", default="cpu")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of every fp32 model")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--prune-ratio", type=float, default=0.5)
    parser.add_argument("--input-size", type=int, default=None, help="default: each baseline's own")
    parser.add_argument("--study", help="also rebuild these searched members from results/<study>")
    parser.add_argument("--trials", default="", help="comma-separated trial numbers of --study")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--skip-224", action="store_true", help="skip the ResNet-18 224x224 latency table")
    parser.add_argument("--json", type=Path, help="also write every row here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    profile = load_profile(args.hardware)
    task = get_task("xray")
    dataset = task.load_data(None)
    specs = baseline_specs(args.space, args.epochs, args.input_size)
    if args.study:
        specs += study_specs(args.results, args.study, [int(t) for t in args.trials.split(",") if t], args.epochs)
    started = time.monotonic()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as tmp:
        resnet = [] if args.skip_224 else resnet_224(args, profile, Path(tmp))
        for spec in specs:
            rows += evaluate_model(args, task, dataset, profile, spec, Path(tmp))
    print(f"\n{len(specs)} models, {args.epochs} epochs + {args.finetune_epochs} fine-tuning, prune ratio "
          f"{args.prune_ratio}, profile {profile.name}; {(time.monotonic() - started) / 60:.1f} min; "
          f"measured on {(rows or resnet)[0]['device']}")
    print_table(rows)
    if resnet:
        print(f"\nResNet-18 at 224x224, latency only (batch 1, profile {profile.name}):")
        print_table(resnet)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "resnet18_224": resnet}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
