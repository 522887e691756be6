"""More of the front per CPU-hour: the same wall-clock budget for (a) NSGA-II training every trial fully,
(b) random search training every trial fully, (c) nas multi-fidelity (NSGA-II + successive halving over
epochs 1, 3, 9, promoted asynchronously; (g) the same with eager promotion), and (f) one-shot (a supernet trained
once, NSGA-II over subnets that inherit its weights, the front fine-tuned), several seeds each, in one run on this
machine.

Each run is a real `nas search` on the default X-ray space (`--no-baselines`, every run in its own results root so
no run reuses another's measurements), stopped by `--timeout`. It prints the hypervolume of the (validation AUC,
p95 latency) front of the trials completed by each point in time, against one fixed reference point, and the test
AUC and latency of each final front's most accurate and fastest members (scored once, after the search).

Time counts from the start of each `nas search` process, so (f)'s supernet training is inside the budget. (f)'s
trials are scored with inherited weights (search-time estimates), so the per-run table also gives the hypervolume
of each final front as pareto.json reports it (fine-tuned members for (f), re-measured latency) and each run's
whole wall clock, which for (f) includes fine-tuning the front after the budget.

    python benchmarks/search_efficiency.py                      # 30 min per run, 3 seeds: 4.5 hours
    python benchmarks/search_efficiency.py --budget-min 5 --seeds 0 1 2
    python benchmarks/search_efficiency.py --data ../shared/data/chest_xray_224 --budget-min 20 --seeds 0
    python benchmarks/search_efficiency.py --budget-min 5 --seeds 0 --methods a f --supernet-epochs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import optuna

from nas.search.hypervolume import hypervolume

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "a: nsga2, full": ["--sampler", "nsga2", "--rungs", "none"],
    "b: random, full": ["--sampler", "random", "--rungs", "none"],
    "c: nas multi-fidelity": ["--sampler", "nsga2"],
    "d: tpe, multi-fidelity": ["--sampler", "tpe"],
    "e: gp, multi-fidelity": ["--sampler", "gp"],
    "f: one-shot": ["--sampler", "nsga2", "--strategy", "one-shot"],
    "g: multi-fidelity, eager": ["--sampler", "nsga2", "--promote-after", "1"],
}
"""Multi-fidelity runs add `--rungs`: epochs/9, epochs/3, epochs (reduction factor 3), as many as are distinct.
(c) promotes asynchronously (a rung waits for 3 results; stopped trials are continued later); (g) is the rule
before that: the first trial to reach a rung goes on."""
DIRECTIONS = ("maximize", "minimize")


def run_search(method: str, seed: int, args: argparse.Namespace, root: Path) -> Path:
    results = root / f"{method[0]}-{seed}"
    command = [sys.executable, "-m", "nas.cli.main", "search", "--task", "xray", "--hardware", args.hardware,
               "--study", "run", "--results", str(results), "--trials", "100000", "--timeout",
               str(args.budget_min * 60), "--seed", str(seed), "--epochs", str(args.epochs), "--no-baselines",
               "--no-progress", *METHODS[method]]
    if "multi-fidelity" in method:
        command += ["--rungs", ",".join(map(str, rungs_for(args.epochs)))]
    if "one-shot" in method:
        command += ["--supernet-epochs", str(args.supernet_epochs), "--member-epochs", str(args.member_epochs)]
    if args.space:
        command += ["--space", args.space]
    if args.data:
        command += ["--data", str(Path(args.data).resolve())]
    log = results.with_suffix(".log")
    if args.tables_only:
        return results
    results.mkdir(parents=True, exist_ok=True)
    started = datetime.now()  # naive local time, as Optuna stamps trials
    with log.open("w") as out:
        subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=True)
    timing(results).write_text(json.dumps({"start": started.isoformat(), "end": datetime.now().isoformat()}))
    return results


def timing(results: Path) -> Path:
    return results.with_suffix(".timing.json")


def rungs_for(epochs: int) -> list[int]:
    return sorted({max(1, epochs // 9), max(1, epochs // 3), epochs})


def history(results: Path, budget_s: float, points: int, reference: tuple[float, float]
            ) -> tuple[list[float], dict[str, int]]:
    """Hypervolume of the trials completed by each of `points` equally spaced times within the budget."""
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{results / 'run' / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    start = process_span(results)[0] or min(t.datetime_start for t in trials if t.datetime_start)
    done = [((t.datetime_complete - start).total_seconds(), t.values) for t in trials
            if t.state.name == "COMPLETE" and t.values]
    counts = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    counts["stopped early"] = sum("stopped" in t.user_attrs for t in trials)
    out = []
    for k in range(1, points + 1):
        cutoff = budget_s * k / points
        values = [v for at, v in done if at <= cutoff]
        out.append(hypervolume(values, DIRECTIONS, reference) if values else 0.0)
    return out, counts


def process_span(results: Path) -> tuple[datetime | None, datetime | None]:
    """When the run's `nas search` started and ended (None for runs kept from before this was recorded)."""
    if not timing(results).exists():
        return None, None
    stamps = json.loads(timing(results).read_text())
    return datetime.fromisoformat(stamps["start"]), datetime.fromisoformat(stamps["end"])


def front_hypervolume(results: Path, reference: tuple[float, float]) -> float:
    """Of the final front as pareto.json reports it: trained (or, one-shot, fine-tuned) and re-measured."""
    members = json.loads((results / "run" / "pareto.json").read_text())["members"]
    points = [(m["metrics"]["val"]["auc"], m["latency"]["p95_ms"]) for m in members]
    return hypervolume(points, DIRECTIONS, reference) if points else 0.0


def front_members(results: Path) -> dict[str, dict]:
    members = json.loads((results / "run" / "pareto.json").read_text())["members"]
    best = max(members, key=lambda m: m["metrics"]["val"]["auc"])
    fastest = min(members, key=lambda m: m["latency"]["p95_ms"])
    return {"most accurate": best, "fastest": fastest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=30.0, help="wall clock per run (default 30 min)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["a", "b", "c"], help="letters from: " + ", ".join(METHODS))
    parser.add_argument("--epochs", type=int, default=9, help="full training (and the top rung) in epochs")
    parser.add_argument("--hardware", default="cpu")
    parser.add_argument("--space", help="search space (default: the task's complete one)")
    parser.add_argument("--supernet-epochs", type=int, default=10, help="(f): epochs the supernet trains")
    parser.add_argument("--member-epochs", type=int, default=3, help="(f): epochs each front member is fine-tuned")
    parser.add_argument("--data", help="default: the bundled PneumoniaMNIST")
    parser.add_argument("--reference-ms", type=float, nargs="+", default=[2.0, 1.0],
                        help="hypervolume reference: (AUC 0.5, this p95 latency in ms); the first drives the "
                             "per-run table, each gets a summary (default 2.0 and 1.0, the cpu profile's budget)")
    parser.add_argument("--points", type=int, default=4, help="times at which the hypervolume is reported")
    parser.add_argument("--keep", type=Path, help="keep every run's results here (default: a temporary folder)")
    parser.add_argument("--tables-only", action="store_true",
                        help="run nothing: print the tables from the runs kept in --keep by an earlier call")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    methods = [m for m in METHODS if m[0] in args.methods]
    budget_s = args.budget_min * 60
    Curves = dict[float, tuple[list[float], dict[str, int]]]  # per reference: HV over time, trial counts
    rows: dict[str, list[tuple[int, Curves, dict[str, dict], Path]]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(prefix="nas-efficiency-") as tmp:
        root = args.keep or Path(tmp)
        for seed in args.seeds:  # interleaved, so a slow stretch of the machine hits every method alike
            for method in methods:
                if not args.tables_only:
                    print(f"running {method}, seed {seed} ({args.budget_min:g} min) ...", file=sys.stderr, flush=True)
                results = run_search(method, seed, args, root)
                curves = {ms: history(results, budget_s, args.points, (0.5, ms)) for ms in args.reference_ms}
                rows[method].append((seed, curves, front_members(results), results))

    data = args.data or "bundled PneumoniaMNIST"
    primary = args.reference_ms[0]
    print(f"\nSearch efficiency on {data}, {args.budget_min:g} min per run, seeds {args.seeds}, "
          f"full training {args.epochs} epochs (rungs {rungs_for(args.epochs)}), hypervolume of (val AUC, p95 ms) "
          f"vs reference (0.5, {primary} ms)")
    times = [f"HV@{args.budget_min * k / args.points:.1f}m" for k in range(1, args.points + 1)]
    print(f"{'method':<24} {'seed':>4} {'done':>5} {'stopped':>7} {'failed':>6} " + " ".join(f"{t:>9}" for t in times)
          + f" {'HV front':>9} {'wall min':>8}")
    for method, runs in rows.items():
        for seed, curves, _, results in runs:
            hv, counts = curves[primary]
            start, end = process_span(results)
            wall = f"{(end - start).total_seconds() / 60:>8.1f}" if start and end else f"{'-':>8}"
            print(f"{method:<24} {seed:>4} {counts['COMPLETE']:>5} {counts['stopped early']:>7} {counts['FAIL']:>6} "
                  + " ".join(f"{v:>9.4f}" for v in hv) + f" {front_hypervolume(results, (0.5, primary)):>9.4f} {wall}")
    for ms in args.reference_ms:
        medians = {m: statistics.median(curves[ms][0][-1] for _, curves, _, _ in runs) for m, runs in rows.items()}
        print(f"\nreference (0.5, {ms} ms)")
        fronts = {m: statistics.median(front_hypervolume(results, (0.5, ms)) for *_, results in runs)
                  for m, runs in rows.items()}
        print(f"{'method':<24} {'median HV at budget':>20} {'vs a':>7} {'vs b':>7} {'median HV front':>16} "
              f"{'vs a':>7}")
        first = {letter: next((medians[m] for m in medians if m[0] == letter), None) for letter in "ab"}
        first_front = next((fronts[m] for m in fronts if m[0] == "a"), None)
        for method, value in medians.items():
            ratios = [f"{value / first[x]:>7.2f}" if first[x] else f"{'-':>7}" for x in "ab"]
            front_ratio = f"{fronts[method] / first_front:>7.2f}" if first_front else f"{'-':>7}"
            print(f"{method:<24} {value:>20.4f} " + " ".join(ratios) + f" {fronts[method]:>16.4f} {front_ratio}")
    print(f"\n{'method':<24} {'seed':>4} {'member':<14} {'trial':>5} {'val AUC':>8} {'test AUC':>8} {'p95 ms':>8}  model")
    for method, runs in rows.items():
        for seed, _, members, _ in runs:
            for label, m in members.items():
                print(f"{method:<24} {seed:>4} {label:<14} {m['trial']:>5} {m['metrics']['val']['auc']:>8.4f} "
                      f"{m['metrics']['test']['auc']:>8.4f} {m['latency']['p95_ms']:>8.3f}  {m['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
