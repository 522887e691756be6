"""What every end of search shares: the completed trials, their feasibility under the study's constraints, what
compression did to each, and which artifacts are kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from nas.search.constraints import result_constraints
from nas.search.result import TrialResult
from nas.search.trial import CHECKPOINT, DEPLOYED_ONNX, FLOAT_ONNX
from nas.search.warm_start import TRAINED_WEIGHTS

if TYPE_CHECKING:
    from nas.search.runner import SearchRun

SCHEMA_VERSION = 1
ARTIFACTS = ("model.pt", DEPLOYED_ONNX, FLOAT_ONNX, TRAINED_WEIGHTS, CHECKPOINT, "model.int8.xml", "model.int8.bin")


def completed_results(run: SearchRun) -> list[TrialResult]:
    trials = run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [TrialResult.model_validate(t.user_attrs["result"]) for t in trials if "result" in t.user_attrs]


def feasible(run: SearchRun, result: TrialResult) -> bool:
    """Feasible by the same constraint values the search gave Optuna."""
    return all(value <= 0 for value in result_constraints(run.settings.constraints, result).values())


def compression_effect(r: TrialResult) -> dict[str, Any]:
    """What each compression step cost or gained: float vs deployed validation metrics, latency per precision."""
    c = r.spec.compression
    return {
        "prune_ratio": c.prune_ratio, "pruned_layers": len(c.channels), "quant": c.quant,
        "distill": {"temperature": c.temperature, "alpha": c.alpha, "teacher": r.teacher} if c.distill else None,
        "val_float": r.float_metrics.get("val"), "val_deployed": r.metrics["val"],
        "latency_by_precision": {p: {"p50_ms": m.p50_ms, "p95_ms": m.p95_ms}
                                 for p, m in r.latency_by_precision.items()},
    }


def prune_artifacts(results_dir: Path, keep: set[int]) -> None:
    """Weights and ONNX files are kept for front members and baselines only (settled point 15), in the trial
    folder and in its stages' folders."""
    for trial_dir in (results_dir / "trials").glob("*"):
        if trial_dir.name.isdigit() and int(trial_dir.name) not in keep:
            for folder in (trial_dir, *(d for d in trial_dir.iterdir() if d.is_dir())):
                for name in ARTIFACTS:
                    (folder / name).unlink(missing_ok=True)
