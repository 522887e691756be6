"""Clinical operating points of a search's front on the chest X-ray folder, in one run.

For each front member: exported (calibrated, with a referral band), then on the test split: AUC with its 95%
bootstrap interval, sensitivity / specificity at the exported threshold, ECE before and after calibration,
sensitivity / specificity on the cases left to the model when the least certain 0, 5, 10 or 20% of validation
are referred (the band is fitted on validation, as `nas export --refer-rate` fits it, and applied to test), the
normal / bacterial / viral breakdown (groups from benchmarks/make_pneumonia_groups.py), and `nas predict` on the
test JPEGs: images per second and p50 / p95 ms per image (reading, pre-processing, inference) on this CPU.

Takes an existing study (--study/--results), or first runs a short one at a small input size:

    python benchmarks/clinical_operating_points.py --trials 4 --epochs 2 --input-size 64
    python benchmarks/clinical_operating_points.py --study xray-cpu --results results
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nas.clinical.calibration import calibrated_scores, in_band, referral_band
from nas.clinical.evaluate import evaluate_export, figures, load_cases, logits
from nas.clinical.predict import DeployedModel, predict
from nas.report.package import export_trial
from nas.search.final import finalize
from nas.search.runner import SearchConfig, prepare, run_search

CHEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray_224"
RATES = (0.0, 0.05, 0.10, 0.20)
SHIPPED_RATE = 0.10


def small_space(input_size: int, folder: Path) -> Path:
    """The quick space (xray-tiny) at `input_size`, its baseline included, written beside the study."""
    space = yaml.safe_load((Path(__file__).resolve().parents[1] / "search_spaces" / "xray-tiny.yaml").read_text())
    space.update(name=f"xray-tiny-{input_size}", input_size=input_size)
    for baseline in space.get("baselines", []):
        baseline["input_size"] = input_size
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"xray-tiny-{input_size}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def scores(model: DeployedModel, data: Path, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Case keys, labels and calibrated scores of a split, scored as `nas evaluate` scores it."""
    cases = load_cases(data, split, model)
    return cases.keys, cases.labels, calibrated_scores(logits(model, cases.images), model.temperature)


def referral_rows(model: DeployedModel, data: Path) -> list[dict[str, Any]]:
    """Test figures on non-referred cases with the band fitted on validation at each rate."""
    _, _, val_scores = scores(model, data, "val")
    _, labels, test_scores = scores(model, data, "test")
    rows = []
    for rate in RATES:
        band = referral_band(val_scores, model.threshold, rate)
        referred = np.asarray(in_band(test_scores, band), bool)
        rows.append({"rate": rate, "band": list(band), **figures(labels, test_scores, model.threshold, referred)})
    return rows


def throughput(model: DeployedModel, data: Path) -> dict[str, float]:
    """`nas predict`'s loop on every test JPEG, one image at a time as a clinic sends them; its scores are
    compared with `nas evaluate`'s on the same files (one reads files, the other the data set reader)."""
    started = time.perf_counter()
    rows = predict(model, [data / "test"], progress=False)
    seconds = time.perf_counter() - started
    ms = np.array([r.ms for r in rows if r.error is None])
    keys, _, evaluated = scores(model, data, "test")
    by_key = dict(zip(keys, evaluated))
    diff = max(abs(r.score - by_key[Path(r.input).relative_to(data).as_posix()]) for r in rows if r.error is None)
    return {"images": len(rows), "failed": sum(r.error is not None for r in rows), "seconds": seconds,
            "images_per_s": len(rows) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "max_score_diff_vs_evaluate": float(diff)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=None, help="an existing study on the chest X-ray folder (else one is run)")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--data", type=Path, default=CHEST)
    parser.add_argument("--trials", type=int, default=4, help="trials of the short search (no --study)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial of the short search")
    parser.add_argument("--input-size", type=int, default=64, help="input size of the short search")
    args = parser.parse_args()

    started = time.monotonic()
    if args.study is None:
        args.study = f"bench-clinical-{args.input_size}"
        space = small_space(args.input_size, args.results / "spaces")
        config = SearchConfig(task="xray", hardware="cpu", space=str(space), study=args.study, results=args.results,
                              trials=args.trials, epochs=args.epochs, data=str(args.data), progress=False)
        finalize(run_search(config, prepare(config)))
    doc = json.loads((args.results / args.study / "pareto.json").read_text())
    groups = args.results / args.study / "pneumonia_groups.csv"
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_pneumonia_groups.py")), str(args.data),
                    "--out", str(groups)], check=True, stdout=subprocess.DEVNULL)

    out = []
    for member in doc["members"]:
        folder = args.results / args.study / "clinical" / str(member["trial"])
        export_trial(args.results, args.study, member["trial"], folder, data=str(args.data),
                     refer_rate=SHIPPED_RATE)
        model = DeployedModel.load(folder)
        audit = evaluate_export(folder, args.data, split="test", groups=groups)
        out.append({"trial": member["trial"], "summary": member["summary"], "audit": audit,
                    "referral": referral_rows(model, args.data), "predict": throughput(model, args.data)})
    (args.results / args.study / "clinical_operating_points.json").write_text(json.dumps(out, indent=2))
    report(doc, out, time.monotonic() - started)
    return 0


def _ci(stat: dict[str, Any]) -> str:
    if stat["value"] is None:
        return "n/a"
    low, high = stat["ci95"]
    return f"{stat['value']:.3f} [{low:.3f}, {high:.3f}]"


def report(doc: dict[str, Any], out: list[dict[str, Any]], seconds: float) -> None:
    first = out[0]["audit"]
    print(f"study {doc['study']}: {len(out)} front member(s), data {first['data']['path']} test split "
          f"({first['data']['cases']} cases, {first['data']['positives']} {first['data']['positive_class']}); "
          f"this run {seconds / 60:.1f} min; 95% bootstrap intervals over cases")
    print(f"\n{'trial':>5} {'model':<40} {'test AUC':<22} {'sensitivity':<22} {'specificity':<22} "
          f"{'ECE before':>10} {'ECE after':>9} {'T':>6} {'img/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'|predict-eval|':>14}")
    for m in out:
        a, e, p = m["audit"]["metrics"], m["audit"]["calibration_error"], m["predict"]
        print(f"{m['trial']:>5} {m['summary'][:40]:<40} {_ci(a['auc']):<22} {_ci(a['sensitivity']):<22} "
              f"{_ci(a['specificity']):<22} {e['ece_uncalibrated']:>10.4f} {e['ece']:>9.4f} "
              f"{m['audit']['model']['temperature']:>6.3f} {p['images_per_s']:>7.1f} {p['p50_ms']:>7.2f} "
              f"{p['p95_ms']:>7.2f} {p['max_score_diff_vs_evaluate']:>14.1e}")
    print("\nreferral: band fitted on validation at each rate, applied to test; figures on the non-referred cases")
    print(f"{'trial':>5} {'rate':>5} {'test referred':>13} {'sensitivity':>11} {'specificity':>11}")
    for m in out:
        for r in m["referral"]:
            print(f"{m['trial']:>5} {r['rate']:>5.0%} {r['referral_rate']:>13.3f} "
                  f"{r['sensitivity_non_referred']:>11.3f} {r['specificity_non_referred']:>11.3f}")
    print(f"\ngroups (rule: {first['groups']['rule']})")
    print(f"{'trial':>5} {'group':<10} {'cases':>5} {'sensitivity':<22} {'specificity':<22} flag")
    for m in out:
        for g in m["audit"]["groups"]["rows"]:
            flag = {True: "FLAGGED", False: "ok", None: "not judged"}[g["flagged"]]
            print(f"{m['trial']:>5} {g['group']:<10} {g['cases']:>5} {_ci(g['sensitivity']):<22} "
                  f"{_ci(g['specificity']):<22} {flag}")


if __name__ == "__main__":
    sys.exit(main())
