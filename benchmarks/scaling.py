"""Wall-clock time of one fixed study run by 1 and by 2 local workers, measured in one run on this machine.

Each worker is a separate process on one study (`nas search --workers K`), as workers on several machines would
be. On a 2-core machine two workers share the cores that one worker's training already uses, so the speed-up is
bounded well below 2; on a bigger machine or several, run the same script with more workers (`--workers 1 2 4 8`).
Trials are fixed (the same seed, space and budget) so every configuration does the same amount of work.

    python benchmarks/scaling.py --trials 16 --workers 1 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]


def run(workers: int, trials: int, epochs: int, root: Path) -> tuple[float, int]:
    study = f"scaling-{workers}"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "nas.cli.main", "search", "--space", "xray-tiny", "--hardware", "cpu", "--study",
         study, "--results", str(root), "--trials", str(trials), "--epochs", str(epochs), "--no-baselines",
         "--workers", str(workers), "--no-progress"],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    storage = f"sqlite:///{root / study / 'study.db'}"
    complete = sum(t.state.name == "COMPLETE" for t in optuna.load_study(study_name=study, storage=storage).trials)
    return elapsed, complete


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nas-scaling-") as tmp:
        for count in args.workers:
            elapsed, complete = run(count, args.trials, args.epochs, Path(tmp))
            rows.append((count, elapsed, complete))
    base = rows[0][1]
    print(f"{args.trials}-trial study (xray-tiny, {args.epochs} epochs per trial), SQLite storage, this machine")
    print(f"{'workers':>7} {'wall s':>8} {'complete':>8} {'speed-up':>8}")
    for count, elapsed, complete in rows:
        print(f"{count:>7} {elapsed:>8.1f} {complete:>8} {base / elapsed:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
