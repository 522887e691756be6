"""What a latency budget is judged on, why a search found nothing feasible, and a final re-measurement that does
not drop a member on one disturbed timing (settled point 20).

What the budget is judged on (p95, or p50 for a timing that stayed disturbed) is the constraint model's
(nas.search.constraints.budget_latency_ms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nas.hardware import Measurement
from nas.search.constraints import budget_basis, budget_latency_ms


def explain_infeasible(results: Sequence[Any], constraints: Callable[[Any], dict[str, float]]) -> dict[str, Any]:
    """Which constraints no completed trial met, and by how much the nearest trials miss each.

    `constraints(result)` gives Optuna's constraint values (<= 0 met) by name; `results` carry `.trial`."""
    misses: dict[str, dict[str, Any]] = {}
    for r in results:
        for name, value in constraints(r).items():
            if value > 0 and (name not in misses or value < misses[name]["misses_by"]):
                misses[name] = {"nearest_trial": r.trial, "misses_by": value}
    parts = [f"{name} (nearest: trial {m['nearest_trial']}, over by {m['misses_by']:.4g})"
             for name, m in sorted(misses.items())]
    message = (f"no trial of {len(results)} meets the constraints: " + "; ".join(parts) +
               ". pareto.json keeps the unconstrained front, labelled so") if results else \
        "no trial completed: there is no front"
    return {"completed_trials": len(results), "constraints": misses, "message": message,
            "front": "unconstrained" if results else "empty"}


def remeasure(measure: Callable[[], Measurement], during_search: Measurement, budget_ms: float | None
              ) -> tuple[Measurement, str | None]:
    """Re-measure a front member; if it now crosses a budget it met during the search, retake before deciding.

    Returns the measurement to report and, when a retake happened, what was decided and why."""
    first = measure()
    if budget_ms is None or budget_latency_ms(during_search) > budget_ms or budget_latency_ms(first) <= budget_ms:
        return first, None
    second = measure()
    if budget_latency_ms(second) <= budget_ms:
        return second, (f"re-measured over the {budget_ms} ms budget ({budget_basis(first)} "
                        f"{budget_latency_ms(first):.3f} ms), retaken within it ({budget_latency_ms(second):.3f} ms): "
                        "kept on the retake")
    best = min((first, second), key=budget_latency_ms)
    return best, (f"re-measured over the {budget_ms} ms budget twice ({budget_latency_ms(first):.3f}, "
                  f"{budget_latency_ms(second):.3f} ms, judged on {budget_basis(best)}) after meeting it during "
                  f"the search ({budget_latency_ms(during_search):.3f} ms): reported with the lower")
