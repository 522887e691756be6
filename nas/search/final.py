"""The end of a search, for every task: the front re-measured in one session, scored once on test, written as
pareto.json. The task supplies what it adds (a pipeline's whole-scan latency, the nodule dense baseline)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

from nas._io import write_json
from nas.compress import load_model
from nas.hardware import Measurement
from nas.hardware.deploy import shipped_artifact
from nas.hardware.runtime_choice import shipped_timing
from nas.search.constraints import result_constraints
from nas.search.feasibility import explain_infeasible, remeasure
from nas.search.front import SCHEMA_VERSION, completed_results, compression_effect, feasible, prune_artifacts
from nas.search.objectives import resolve_objectives
from nas.search.pareto import knee, non_dominated
from nas.search.result import TrialResult
from nas.search.runner import SearchRun
from nas.search.trial import DEPLOYED_ONNX, deployed_artifact
from nas.tasks import Candidate, CandidateScore, ScanLatency, target_at_batch


def finalize(run: SearchRun, *, keep_artifacts: str = "front", log: Any = None) -> dict[str, Any]:
    """Write results/<study>/pareto.json (settled points 2 and 10) and return it."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    ctx, settings, task = run.context, run.settings, run.context.task
    objectives = resolve_objectives(settings.objectives)
    directions = [o.direction for o in objectives]
    results = completed_results(run)
    candidates = [r for r in results if feasible(run, r)]
    infeasible = None if candidates else explain_infeasible(results, lambda r: result_constraints(settings.constraints, r))
    candidates = candidates or results  # none feasible: the unconstrained front, labelled (settled point 20)
    front = [r for r, on in zip(candidates, non_dominated([[o.value(r) for o in objectives] for r in candidates],
                                                          directions) if candidates else []) if on]
    if ctx.one_shot is not None:  # settled point 21: inherited scores chose the front; it ships fine-tuned
        inherited = [r for r in front if r.train_log.get("weights") == "inherited"]
        say(f"fine-tuning {len(inherited)} front member(s) as standalone models "
            f"({min(ctx.one_shot.member_epochs, ctx.max_epochs or ctx.one_shot.member_epochs)} epoch(s) each) ...")
        front = [ctx.one_shot.finetune(ctx, r) if r in inherited else r for r in front]
    baselines = [r for r in results if r.spec.baseline]
    candidates_to_remeasure = {r.trial: r for r in front + baselines}

    if infeasible:
        say(infeasible["message"])
    say(f"re-measuring {len(candidates_to_remeasure)} model(s) on {ctx.profile.name} in one session ...")
    remeasured: dict[int, tuple[Measurement, ScanLatency | None]] = {}
    retakes: dict[int, str] = {}
    for number, r in sorted(candidates_to_remeasure.items()):
        scan: list[ScanLatency | None] = [None]

        def measure(r: TrialResult = r) -> Measurement:
            measurement, scan[0] = measure_candidate(run, r)
            return measurement

        measurement, note = remeasure(measure, r.measurement, settings.constraints.max_latency_ms)
        remeasured[number] = measurement, scan[0]
        if note:
            retakes[number] = note
            say(f"trial {number}: {note}")
        write_json(ctx.trial_dir(number) / "remeasured.json", measurement.model_dump())
    final = [r.model_copy(update={"measurement": remeasured[r.trial][0], "scan_latency": remeasured[r.trial][1]})
             for r in front]
    still = non_dominated([[o.value(r) for o in objectives] for r in final], directions) if final else []
    members = [r for r, on in zip(final, still) if on]
    dropped = [r.trial for r, on in zip(final, still) if not on]

    kept = {r.trial: r for r in members + baselines}  # a member dropped by re-measurement is not reported or tested
    say(f"scoring {len(kept)} model(s) once on the test split ...")
    tests = {number: score_on_test(run, r) for number, r in sorted(kept.items())}
    knee_member = members[knee([[o.value(r) for o in objectives] for r in members], directions)] if members else None
    extras = task.front_extras(
        ctx.target, candidate_of(run, knee_member) if knee_member else None,
        ctx.trial_dir(knee_member.trial) if knee_member else None,
        knee_member.measurement.p50_ms if knee_member else None,
        tests[knee_member.trial][1] if knee_member else None, ctx.dataset, say,
        knee_member.runtime_choice if knee_member else None)

    def entry(r: TrialResult) -> dict[str, Any]:
        m, scan = remeasured[r.trial]
        candidate = candidate_of(run, r)
        return {
            "trial": r.trial, "is_baseline": r.spec.baseline is not None, "baseline": r.spec.baseline,
            "summary": task.summary(candidate), "spec": r.pipeline or r.spec.model_dump(mode="json"),
            "params": r.params, "macs": r.macs, "metrics": {"val": r.metrics["val"], "test": tests[r.trial][0]},
            **({"metrics_note": task.metrics_note} if task.metrics_note else {}),
            "latency": m.model_dump() | (scan.latency_fields() if scan else {}),
            **({"latency_by_stage": {k: s.model_dump() for k, s in r.latency_by_stage.items()}}
               if r.latency_by_stage else {}),
            "latency_during_search": {"p50_ms": r.measurement.p50_ms, "p95_ms": r.measurement.p95_ms},
            "objectives": {o.name: o.value(r.model_copy(update={"measurement": m})) for o in objectives},
            "weights": r.train_log.get("weights", "trained"),
            "compression": compression_effect(r), "flags": r.flags + ([retakes[r.trial]] if r.trial in retakes else []),
            "runtime_choice": r.runtime_choice.model_dump(mode="json") if r.runtime_choice else None,
            "artifacts": task.artifacts(ctx.trial_dir(r.trial)),
        }

    states = [t.state.name for t in run.study.get_trials(deepcopy=False)]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "study": run.study.study_name,
        "task": settings.task,
        "hardware": settings.hardware,
        "objectives": [{"name": o.name, "direction": o.direction} for o in objectives],
        "strategy": settings.strategy or {"name": "trials"},
        "constraints": settings.constraints.as_dict() | ({"latency_unit": task.latency_unit} if task.latency_unit
                                                          else {}),
        "target_sensitivity": settings.target_sensitivity,
        "primary_metric": {"name": task.primary_metric, "label": task.label(task.primary_metric)},
        "members": [entry(r) for r in members],
        "baselines": [entry(r) for r in baselines],
        "knee_trial": knee_member.trial if knee_member else None,
        "no_feasible_trial": infeasible,
        "remeasured": {"members_before": len(front), "members_after": len(members), "dropped": dropped,
                       "retaken": retakes,
                       "note": "front members were measured again in one session (every stage of a multi-stage "
                               "candidate); dominance uses those numbers"},
        "trials": {state: states.count(state) for state in sorted(set(states))},
        "data": task.describe_data(ctx.dataset),
        "search_space": ctx.space.name,
        "latency_target": ctx.target.describe(),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    } | extras
    write_json(ctx.results_dir / "pareto.json", doc)
    if keep_artifacts != "all":
        prune_artifacts(ctx.results_dir, keep=set(kept))
    return doc


def candidate_of(run: SearchRun, r: TrialResult) -> Candidate:
    return run.context.task.candidate_of(r.spec, r.pipeline)


def measure_candidate(run: SearchRun, r: TrialResult) -> tuple[Measurement, ScanLatency | None]:
    """Every stage's deployed artifact measured again at its batch (the main stage on the runtime it ships with),
    composed as in the search, with the runs per case the search saw."""
    ctx = run.context
    candidate = candidate_of(run, r)
    folder = ctx.trial_dir(r.trial)
    measured = {}
    for stage in candidate.stages:
        stage_folder = candidate.folder(folder, stage)
        target, shipped = shipped_timing(target_at_batch(ctx.target, stage.batch),
                                         r.runtime_choice if stage.compressed else None, stage_folder / DEPLOYED_ONNX)
        model = load_model(stage.spec, stage_folder / "model.pt") if ctx.target.needs_model else None
        measured[stage.name] = target.measure(shipped, stage.spec.compression.quant,
                                              stage.spec.input_shape, model)
    runs = {name: s.runs for name, s in r.scan_latency.stages.items()} if r.scan_latency else None
    return ctx.task.compose_latency(candidate, ctx.dataset, measured, runs)


def score_on_test(run: SearchRun, r: TrialResult) -> tuple[dict[str, Any], CandidateScore | None]:
    """Computed once per trial, at the validation threshold, and kept in the trial folder: the main stage's
    metrics, and what scoring the whole candidate adds."""
    ctx = run.context
    folder = ctx.trial_dir(r.trial)
    path = folder / "test_metrics.json"
    candidate = candidate_of(run, r)
    if path.exists() and len(candidate.stages) == 1:
        return json.loads(path.read_text()), None
    artifacts = {s.name: deployed_artifact(s.spec, candidate.folder(folder, s)) for s in candidate.stages}
    artifacts[candidate.main.name] = shipped_artifact(r.runtime_choice, artifacts[candidate.main.name])
    metrics: dict[str, Any] = dict(ctx.task.evaluate(
        artifacts[candidate.main.name], r.spec, ctx.dataset, "test", threshold=r.metrics["val"]["threshold"],  # type: ignore[arg-type]
        target_sensitivity=run.settings.target_sensitivity))
    scored = ctx.task.score_candidate(candidate, artifacts, ctx.dataset, "test")
    if scored is not None:
        metrics |= scored.metrics
    write_json(path, metrics)
    return metrics, scored
