"""`nas search`: run (or resume) a hardware-aware multi-objective study and print its Pareto front."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from nas import interrupt
from nas.cli._common import add_device_options, add_json_option, add_study_options, err, print_json, study_name
from nas.defaults import GRACE_PERIOD_S, MEMBER_EPOCHS, SAMPLERS, STRATEGIES, SUPERNET_EPOCHS
from nas.errors import ConfigError, TrialError

EPILOG = """examples:
  nas search --task xray --hardware cpu --trials 20
  nas search --task xray --hardware cpu --trials 40 --max-latency-ms 0.5 --objectives auc,latency_p50
  nas search --study xray-cpu --trials 30          # resume the study and take it to 30 trials
  nas search --data path/to/images --space xray-tiny --epochs 1 --trials 4
  nas search --strategy one-shot --supernet-epochs 10 --member-epochs 3 --trials 200
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="run or resume a search", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sample candidates (architecture + training), measure each on the target before training, "
                    "train the feasible ones, and keep the accuracy/latency Pareto front. Re-running with the same "
                    "--study resumes it; --trials is the study's total, baselines included.",
    )
    p.add_argument("--task", default="xray", help="task (default: xray)")
    p.add_argument("--hardware", default="cpu", help="hardware profile name or YAML path (see `nas profiles`)")
    p.add_argument("--space", help="search space name or YAML path (default: the task's; see `nas spaces`)")
    add_study_options(p, study_required=False)
    p.add_argument("--trials", type=int, default=20, help="trials the study should hold when done (default 20)")
    p.add_argument("--timeout", type=float, help="seconds after which no new trial is started (default: none)")
    p.add_argument("--epochs", type=int, help="cap on every trial's training epochs (quick runs and tests)")
    p.add_argument("--objectives",
                   help="comma-separated objective names (default: the task's own; `nas tasks` lists each task's "
                        "objectives)")
    p.add_argument("--sampler", default="nsga2", choices=SAMPLERS,
                   help="Optuna multi-objective sampler (default: nsga2; benchmarks/search_efficiency.py compares)")
    p.add_argument("--population", type=int, default=10, help="NSGA-II population / TPE start-up trials")
    p.add_argument("--seed", type=int, default=0, help="fixes sampling and training (default 0)")
    p.add_argument("--max-latency-ms", type=float, help="p95 budget; slower candidates are never trained")
    p.add_argument("--min-sensitivity", type=float, help="constraint on validation sensitivity at the threshold")
    p.add_argument("--target-sensitivity", type=float, default=0.95,
                   help="the operating threshold reaches this sensitivity on validation (default 0.95)")
    p.add_argument("--data", help="MedMNIST-style .npz or image folder (default: bundled PneumoniaMNIST)")
    p.add_argument("--positive-class", help="class name of the abnormal class (default: last in sorted order)")
    p.add_argument("--teacher", metavar="FOLDER",
                   help="checkpoint distillation learns from (a folder with spec.json and model.pt, e.g. a trial's or "
                        "an export); default: the study's best validation-AUC model so far")
    p.add_argument("--rungs", metavar="EPOCHS",
                   help="multi-fidelity successive halving: rungs in epochs, e.g. 1,3,9 (the last is full training); "
                        "overrides the space's `fidelity` block; `none` trains every trial fully")
    p.add_argument("--reduction-factor", type=int,
                   help="keep the top 1/R of the trials at each rung (default: the space's, else 3)")
    p.add_argument("--brackets", type=int, help="Hyperband-style brackets: bracket b starts at rung b (default 1)")
    p.add_argument("--promote-after", type=int, metavar="N",
                   help="a rung promotes no trial before it holds N results (default: the reduction factor); an "
                        "earlier trial stops and is continued from its checkpoint if it ranks among the top later; "
                        "1 promotes the first trial to arrive")
    p.add_argument("--warm-start", metavar="STUDY", type=study_name,
                   help="start from an earlier study's front (same task and profile, under --results); candidates "
                        "differing from its trained models only in compression start from those weights")
    p.add_argument("--strategy", default="trials", choices=STRATEGIES,
                   help="trials (default): every candidate trains; one-shot: one weight-sharing supernet trains "
                        "per study, candidates inherit its weights (BatchNorm recalibrated), and the front's members "
                        "are fine-tuned as standalone models before they are re-measured and tested")
    p.add_argument("--supernet-epochs", type=int, default=SUPERNET_EPOCHS,
                   help="one-shot: epochs the supernet trains, once per study (default %(default)s)")
    p.add_argument("--member-epochs", type=int, default=MEMBER_EPOCHS,
                   help="one-shot: epochs each front member is fine-tuned, capped by --epochs (default %(default)s)")
    p.add_argument("--latency-predictor", metavar="JSON",
                   help="a predictor from `nas calibrate --measure` on this profile: candidates it puts over 3x the "
                        "latency budget (--max-latency-ms or the profile's) are not timed, their latency labelled "
                        "estimated (default: none, every candidate is timed)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", help="do not enqueue the baselines")
    p.add_argument("--no-start-points", dest="start_points", action="store_false",
                   help="do not enqueue the space's start_points (known-good candidates tried first)")
    p.add_argument("--trial-timeout", type=float, help="seconds one trial may train before it is failed (default: none)")
    p.add_argument("--keep-artifacts", choices=("front", "all"), default="front",
                   help="keep weights/ONNX of front members and baselines only (default) or of every trial")
    p.add_argument("--workers", type=int, default=1, help="run K local worker processes on the study (default 1)")
    p.add_argument("--grace-period", type=float, default=GRACE_PERIOD_S,
                   help="seconds without a heartbeat before a running trial is failed and retried (default %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--train-device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where candidates train (default auto: cuda when PyTorch sees a GPU)")
    add_device_options(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.report import write_report
    from nas.search.final import finalize
    from nas.search.resume import resume_line, retry_interrupted
    from nas.search.runner import SearchConfig, prepare, run_search
    from nas.search.study import budget_state, storage_url
    from nas.search.workers import run_local_workers

    given = {f.name: getattr(args, f.name) for f in fields(SearchConfig) if hasattr(args, f.name)}
    config = SearchConfig(**given | {  # every flag named as its SearchConfig field; these few are parsed further
        "results": Path(args.results), "progress": args.progress and sys.stderr.isatty(),
        "objectives": tuple(o.strip() for o in args.objectives.split(",") if o.strip()) if args.objectives else None,
    })
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    run_ = prepare(config)
    name = run_.study.study_name
    storage = storage_url(args.storage, Path(args.results), name)
    err(f"study {name!r} ({'new' if run_.created else 'resumed'}), storage {storage}")
    if not run_.created:
        err(resume_line(run_.study, config.trials, retry_interrupted(run_.study)))
    pareto = run_.context.results_dir / "pareto.json"
    if not run_.created and budget_state(run_.study)[0] >= config.trials and _front_is_current(pareto, run_.study):
        err(f"study {name!r} is finished ({config.trials} trials): its front is kept as it is; raise --trials to "
            f"run more, or `nas report --study {name} --remeasure` to re-measure it")
        return _print_front(json.loads(pareto.read_text()), pareto, args.json)
    from nas.data._dataset import leakage

    shared = ", ".join(f"{pair} {n}" for pair, n in leakage(run_.context.dataset).items() if n)
    if shared:
        err(f"warning: leakage: {run_.context.dataset.path} has identical images in two splits ({shared}); "
            "validation and test figures on them are optimistic")
    target = run_.context.target
    if target.how != "local":
        err(f"latencies: {target.how} ({target.device}), {target.runtime}, precisions {', '.join(target.precisions)}"
            + (" -- ESTIMATES, not measurements" if target.how == "estimate" else ""))
    if args.workers == 1:
        run_search(config, run_)
    else:
        codes = run_local_workers(config, storage, name, args.workers)
        run_.interrupted = any(code == 130 for code in codes)
        if any(code not in (0, 130) for code in codes):
            err(f"worker exit codes: {codes}")
    if run_.interrupted:
        err(f"interrupted: completed trials are kept in study {run_.study.study_name!r}; run the same command "
            "again to resume")
        return 130
    failed = [t for t in run_.study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
    if failed and not any(t.state.name == "COMPLETE" for t in run_.study.get_trials(deepcopy=False)):
        first = str(failed[0].user_attrs.get("failure", "no reason recorded")).splitlines()[0][:200]
        raise TrialError(f"every trial of study {name!r} failed ({len(failed)}), so there is no front; trial "
                         f"{failed[0].number}: {first}")
    try:
        with interrupt.stop_now():
            doc = finalize(run_, keep_artifacts=config.keep_artifacts, log=err)
            write_report(run_.context.results_dir)
    except KeyboardInterrupt:
        kept = sum(t.state.name == "COMPLETE" for t in run_.study.get_trials(deepcopy=False))
        err(f"interrupted while writing the front: the {kept} completed trial(s) of study {name!r} are kept; run "
            "the same command again to write pareto.json and the report")
        return 130
    return _print_front(doc, pareto, args.json)


def _front_is_current(pareto: Path, study) -> bool:  # noqa: ANN001 (optuna loads only in the commands using it)
    """pareto.json was written after the study's last trial ended: its trial counts are the study's now. A front
    written when the study was created (`--timeout 0`) or before workers finished is out of date."""
    if not pareto.exists():
        return False
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return json.loads(pareto.read_text()).get("trials") == {s: states.count(s) for s in sorted(set(states))}


def _print_front(doc: dict, pareto: Path, as_json: bool) -> int:
    from nas.report import front_table

    if as_json:
        print_json(doc)
        return 0
    dropped = doc["remeasured"]["dropped"]
    print(front_table(doc))
    if dropped:
        print(f"re-measurement dropped {len(dropped)} member(s) from the front: {dropped}")
    print(f"\nPareto front: {pareto}")
    print(f"report:       {pareto.parent / 'report.html'}")
    return 0
