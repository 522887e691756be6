"""Found models vs the baselines, trained with the same recipe and measured in the same run on this machine.

Runs (or resumes) an X-ray search, then prints one table: each baseline and each front member with test AUC,
p50/p95 latency (all re-measured in one session at the end of the search), params, MACs, and the latency ratio
to ResNet-18. Example (the run in the issue's closing note):

    python benchmarks/xray_front_vs_baselines.py --trials 30 --epochs 8 --max-latency-ms 1.0

On the real-resolution X-rays, with ResNet-18 (224 px) as the only baseline:

    python benchmarks/xray_front_vs_baselines.py --data ../shared/data/chest_xray_224 \
        --space benchmarks/spaces/xray-224-vs-resnet18.yaml --epochs 1 --trials 60 --timeout-min 28

The one-shot search (a supernet trained once, subnets inheriting its weights, the front fine-tuned as standalone
models before it is re-measured and tested), against the reference net and ResNet-18 trained in the same run:

    python benchmarks/xray_front_vs_baselines.py --strategy one-shot --space benchmarks/spaces/xray-28-one-shot.yaml \
        --trials 80 --timeout-min 20 --supernet-epochs 8 --member-epochs 4

(18.4 min on 2 idle cores, 2026-12-07: the best member reached test AUC 0.9546 at 0.068 of ResNet-18's p50, against
0.9729 for ResNet-18 and 0.9638 for the reference net at 0.094: neither target met.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nas.defaults import MEMBER_EPOCHS, SUPERNET_EPOCHS
from nas.search.final import finalize
from nas.search.runner import SearchConfig, prepare, run_search


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=None, help="cap on training epochs per trial")
    parser.add_argument("--max-latency-ms", type=float, default=None, help="p95 budget for searched candidates")
    parser.add_argument("--space", default="xray")
    parser.add_argument("--data", default=None)
    parser.add_argument("--study", default="bench-xray-front")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", default="nsga2")
    parser.add_argument("--timeout-min", type=float, default=None, help="start no trial after this many minutes")
    parser.add_argument("--strategy", default="trials", choices=["trials", "one-shot"])
    parser.add_argument("--supernet-epochs", type=int, default=SUPERNET_EPOCHS, help="one-shot: supernet epochs")
    parser.add_argument("--member-epochs", type=int, default=MEMBER_EPOCHS, help="one-shot: fine-tuning epochs")
    args = parser.parse_args()

    config = SearchConfig(
        task="xray", hardware="cpu", space=args.space, study=args.study, results=args.results, trials=args.trials,
        epochs=args.epochs, max_latency_ms=args.max_latency_ms, data=args.data, seed=args.seed,
        sampler=args.sampler, progress=False, timeout=args.timeout_min * 60 if args.timeout_min else None,
        strategy=args.strategy, supernet_epochs=args.supernet_epochs, member_epochs=args.member_epochs,
    )
    started = time.monotonic()
    run = run_search(config, prepare(config))
    doc = finalize(run)
    elapsed = time.monotonic() - started

    rows = {m["trial"]: (m, "baseline" if m["is_baseline"] else "front") for m in doc["baselines"]}
    rows.update({m["trial"]: (m, "front+baseline" if m["is_baseline"] else "front") for m in doc["members"]})
    reference = next((m for m in doc["baselines"] if m["baseline"] == "resnet18"), None)
    ref_p50 = reference["latency"]["p50_ms"] if reference else None

    print(f"study {doc['study']}: {sum(doc['trials'].values())} trials {doc['trials']}, this run {elapsed / 60:.1f} min")
    print(f"device: {next(iter(rows.values()))[0]['latency']['device']}, "
          f"{next(iter(rows.values()))[0]['latency']['runtime_version']}; all latencies re-measured in one session")
    header = f"{'trial':>5}  {'role':<14} {'model':<44} {'test AUC':>8} {'val AUC':>8} {'p50 ms':>8} {'p95 ms':>8} " \
             f"{'params':>11} {'MMACs':>8} {'p50 / ResNet-18':>15}"
    print(header)
    print("-" * len(header))
    for number, (m, role) in sorted(rows.items(), key=lambda kv: kv[1][0]["latency"]["p50_ms"]):
        name = m["summary"][:44]
        ratio = f"{m['latency']['p50_ms'] / ref_p50:.3f}" if ref_p50 else "n/a"
        print(f"{number:>5}  {role:<14} {name:<44} {m['metrics']['test']['auc']:>8.4f} "
              f"{m['metrics']['val']['auc']:>8.4f} {m['latency']['p50_ms']:>8.3f} {m['latency']['p95_ms']:>8.3f} "
              f"{m['params']:>11,} {m['macs'] / 1e6:>8.1f} {ratio:>15}")
    if reference:
        target = [m for m, _ in rows.values() if m["metrics"]["test"]["auc"] >= reference["metrics"]["test"]["auc"]
                  and m["latency"]["p50_ms"] <= ref_p50 / 20]
        print(f"\ntarget (test AUC >= ResNet-18's {reference['metrics']['test']['auc']:.4f} at <= 1/20 of its p50 "
              f"{ref_p50:.3f} ms): {'met by trial(s) ' + ', '.join(str(m['trial']) for m in target) if target else 'not met'}")
    hand_made = next((m for m in doc["baselines"] if m["baseline"] == "dsconv_reference"), None)
    if hand_made:
        better = [m for m in doc["members"] if not m["is_baseline"]
                  and m["metrics"]["test"]["auc"] > hand_made["metrics"]["test"]["auc"]
                  and m["latency"]["p50_ms"] < hand_made["latency"]["p50_ms"]]
        print(f"target (a member with higher test AUC and lower p50 than the reference net's "
              f"{hand_made['metrics']['test']['auc']:.4f}, {hand_made['latency']['p50_ms']:.3f} ms): "
              f"{'met by trial(s) ' + ', '.join(str(m['trial']) for m in better) if better else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
