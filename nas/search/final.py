"""The end of a search: the front, re-measured in one session, scored once on test, written as pareto.json."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

from nas._io import write_json
from nas.compress import load_model
from nas.hardware import Measurement
from nas.hardware.deploy import shipped_artifact, shipped_file
from nas.hardware.runtime_choice import runtime_target
from nas.search import nodule_trial
from nas.search.constraints import result_constraints
from nas.search.feasibility import explain_infeasible, remeasure
from nas.search.front import SCHEMA_VERSION, completed_results, compression_effect, feasible, prune_artifacts
from nas.search.objectives import resolve_objectives
from nas.search.pareto import knee, non_dominated
from nas.search.result import TrialResult
from nas.search.runner import SearchRun
from nas.search.trial import DEPLOYED_ONNX, deployed_artifact


def finalize(run: SearchRun, *, keep_artifacts: str = "front", log: Any = None) -> dict[str, Any]:
    """Write results/<study>/pareto.json (settled points 2 and 10) and return it."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    ctx, settings = run.context, run.settings
    if nodule_trial.is_pipeline(ctx.task):
        return nodule_trial.finalize_nodule(run, keep_artifacts=keep_artifacts, say=say)
    objectives = resolve_objectives(settings.objectives)
    directions = [o.direction for o in objectives]
    results = completed_results(run)
    candidates = [r for r in results if feasible(run, r)]
    infeasible = None if candidates else explain_infeasible(results, lambda r: result_constraints(settings.constraints, r))
    candidates = candidates or results  # none feasible: the unconstrained front, labelled (settled point 20)
    front = [r for r, on in zip(candidates, non_dominated([[o.value(r) for o in objectives] for r in candidates],
                                                          directions) if candidates else []) if on]
    baselines = [r for r in results if r.spec.baseline]
    candidates_to_remeasure = {r.trial: r for r in front + baselines}

    if infeasible:
        say(infeasible["message"])
    say(f"re-measuring {len(candidates_to_remeasure)} model(s) on {ctx.profile.name} in one session ...")
    remeasured: dict[int, Measurement] = {}
    retakes: dict[int, str] = {}
    for number, r in sorted(candidates_to_remeasure.items()):
        folder = ctx.trial_dir(number)
        model = load_model(r.spec, folder / "model.pt") if ctx.target.needs_model else None
        target = runtime_target(ctx.target, r.runtime_choice.runtime) if r.runtime_choice else ctx.target
        remeasured[number], note = remeasure(lambda: target.measure(
            shipped_file(r.runtime_choice, folder / DEPLOYED_ONNX), r.spec.compression.quant, r.spec.input_shape,
            model), r.measurement, settings.constraints.max_latency_ms)
        if note:
            retakes[number] = note
            say(f"trial {number}: {note}")
        write_json(ctx.trial_dir(number) / "remeasured.json", remeasured[number].model_dump())
    final = [r.model_copy(update={"measurement": remeasured[r.trial]}) for r in front]
    still = non_dominated([[o.value(r) for o in objectives] for r in final], directions) if final else []
    members = [r for r, on in zip(final, still) if on]
    dropped = [r.trial for r, on in zip(final, still) if not on]

    kept = {r.trial: r for r in members + baselines}  # a member dropped by re-measurement is not reported or tested
    say(f"scoring {len(kept)} model(s) once on the test split ...")
    tests = {number: score_on_test(run, r) for number, r in sorted(kept.items())}
    knee_trial = members[knee([[o.value(r) for o in objectives] for r in members], directions)].trial if members else None

    def entry(r: TrialResult) -> dict[str, Any]:
        m = remeasured[r.trial]
        return {
            "trial": r.trial, "is_baseline": r.spec.baseline is not None, "baseline": r.spec.baseline,
            "summary": r.spec.summary(), "spec": r.spec.model_dump(mode="json"), "params": r.params,
            "macs": r.macs, "metrics": {"val": r.metrics["val"], "test": tests[r.trial]},
            "latency": m.model_dump(), "latency_during_search": {"p50_ms": r.measurement.p50_ms,
                                                                 "p95_ms": r.measurement.p95_ms},
            "objectives": {o.name: o.value(r.model_copy(update={"measurement": m})) for o in objectives},
            "compression": compression_effect(r), "flags": r.flags + ([retakes[r.trial]] if r.trial in retakes else []),
            "runtime_choice": r.runtime_choice.model_dump(mode="json") if r.runtime_choice else None,
            "artifacts": {"onnx": str(ctx.trial_dir(r.trial) / "model.onnx"),
                          "weights": str(ctx.trial_dir(r.trial) / "model.pt")},
        }

    states = [t.state.name for t in run.study.get_trials(deepcopy=False)]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "study": run.study.study_name,
        "task": settings.task,
        "hardware": settings.hardware,
        "objectives": [{"name": o.name, "direction": o.direction} for o in objectives],
        "constraints": settings.constraints.as_dict(),
        "target_sensitivity": settings.target_sensitivity,
        "members": [entry(r) for r in members],
        "baselines": [entry(r) for r in baselines],
        "knee_trial": knee_trial,
        "no_feasible_trial": infeasible,
        "remeasured": {"members_before": len(front), "members_after": len(members), "dropped": dropped,
                       "retaken": retakes,
                       "note": "front members were measured again in one session; dominance uses those numbers"},
        "trials": {state: states.count(state) for state in sorted(set(states))},
        "data": ctx.dataset.describe(),
        "search_space": ctx.space.name,
        "latency_target": ctx.target.describe(),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(ctx.results_dir / "pareto.json", doc)
    if keep_artifacts != "all":
        prune_artifacts(ctx.results_dir, keep=set(kept))
    return doc


def score_on_test(run: SearchRun, result: TrialResult) -> dict[str, float]:
    """Computed once per trial, at the validation threshold, and kept in the trial folder."""
    path = run.context.trial_dir(result.trial) / "test_metrics.json"
    if path.exists():
        return json.loads(path.read_text())
    metrics = run.context.task.evaluate(
        shipped_artifact(result.runtime_choice, deployed_artifact(result.spec, run.context.trial_dir(result.trial))),
        result.spec, run.context.dataset, "test",
        threshold=result.metrics["val"]["threshold"], target_sensitivity=run.settings.target_sensitivity,
    )
    write_json(path, metrics)
    return metrics
