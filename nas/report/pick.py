"""`nas pick`: one model from the front under a clinic's constraints, with the reasons a reviewer needs.

Pure functions over pareto.json entries. They choose on validation metrics and the re-measured p95 latency only:
the test split stays an unbiased estimate of the chosen model, which it would not be if it had chosen it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas._io import read_json
from nas.defaults import PICK_RULES
from nas.errors import ConfigError, NasError, StudyError, unknown_name
from nas.hardware.runtime_choice import RuntimeChoice
from nas.report.html import study_dir
from nas.search.constraints import Constraints as StudyConstraints
from nas.search.constraints import constraint_values
from nas.search.pareto import knee

__all__ = ["Choice", "Constraints", "NoFeasibleTrial", "brief", "candidates", "explain", "load_pareto",
           "member_value", "pick", "rank"]

RULE_TEXT = {"auc": "highest validation AUC", "latency": "lowest p95 latency",
             "knee": "closest to the ideal point of the study's objectives (the knee)"}
Member = dict[str, Any]


class NoFeasibleTrial(NasError):
    """Nothing on the front meets the constraints; `closest` holds the nearest misses, nearest first."""

    exit_code = 1

    def __init__(self, message: str, closest: list[Member]) -> None:
        super().__init__(message)
        self.closest = closest


@dataclass(frozen=True)
class Constraints(StudyConstraints):
    """Hard limits a deployment sets (the study's constraint model), judged on pareto.json entries."""

    def __post_init__(self) -> None:
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise ConfigError(f"--max-latency-ms must be positive, got {self.max_latency_ms}")
        if self.min_sensitivity is not None and not 0 < self.min_sensitivity <= 1:
            raise ConfigError(f"--min-sensitivity must be in (0, 1], got {self.min_sensitivity}")

    def broken(self, member: Member) -> list[str]:
        """The flags of the constraints `member` breaks."""
        values = constraint_values(self, p95_ms=member_value(member, "latency_p95"),
                                   sensitivity=member_value(member, "sensitivity"))
        return ["--" + key.replace("_", "-") for key, value in values.items() if value > 0]

    def shortfall(self, member: Member) -> float:
        """How far `member` misses, as the sum of relative excesses (0 when it meets every constraint)."""
        miss = 0.0
        if self.max_latency_ms is not None:
            miss += max(0.0, member_value(member, "latency_p95") / self.max_latency_ms - 1)
        if self.min_sensitivity is not None:
            miss += max(0.0, 1 - member_value(member, "sensitivity") / self.min_sensitivity)
        return miss

    def describe(self) -> str:
        parts = ([f"p95 <= {self.max_latency_ms:g} ms"] if self.max_latency_ms is not None else []) + (
            [f"validation sensitivity >= {self.min_sensitivity:g}"] if self.min_sensitivity is not None else [])
        return " and ".join(parts) or "no constraints"

    def without(self, flag: str) -> Constraints:
        return Constraints(max_latency_ms=None if flag == "--max-latency-ms" else self.max_latency_ms,
                           min_sensitivity=None if flag == "--min-sensitivity" else self.min_sensitivity)


@dataclass(frozen=True)
class Choice:
    """The chosen entry and what it was weighed against."""

    rule: str
    constraints: Constraints
    chosen: Member
    feasible: int
    """How many candidates met the constraints."""
    total: int
    runner_up: Member | None
    """The next candidate under the same rule and constraints."""
    binding: dict[str, Member] = field(default_factory=dict)
    """Constraint flag -> the entry the rule would choose without that constraint (only flags that changed it)."""
    metric: tuple[str, str] = ("auc", "AUC")
    """The task's primary validation metric (name, label), which the accuracy rule ranks by."""


def member_value(member: Member, name: str) -> float:
    """An objective's value from a pareto.json entry: validation metrics and the re-measured latency."""
    latency, val = member["latency"], member["metrics"]["val"]
    fields = {"latency_p50": lambda: latency["p50_ms"], "latency_p95": lambda: latency["p95_ms"],
              "peak_memory": lambda: latency["peak_memory_mb"], "params": lambda: member["params"],
              "macs": lambda: member["macs"]}
    if name in fields:
        return float(fields[name]())
    if name in val:
        return float(val[name])
    raise ConfigError(unknown_name("objective", name, [*fields, *val]))


def candidates(doc: dict[str, Any]) -> list[Member]:
    """Front members, and baselines off the front (a clinic may prefer a known architecture), once each."""
    seen = {m["trial"] for m in doc["members"]}
    return doc["members"] + [b for b in doc.get("baselines", []) if b["trial"] not in seen]


def rank(members: list[Member], rule: str, objectives: list[dict[str, str]], metric: str = "auc") -> list[Member]:
    """`members` best first under `rule` (`auc`: the task's primary `metric`); ties go to the faster, then the more
    accurate, then the earlier trial."""
    if rule not in PICK_RULES:
        raise ConfigError(unknown_name("pick rule", rule, PICK_RULES))
    if rule == "auc":
        return sorted(members, key=lambda m: (-member_value(m, metric), member_value(m, "latency_p95"), m["trial"]))
    if rule == "latency":
        return sorted(members, key=lambda m: (member_value(m, "latency_p95"), -member_value(m, metric), m["trial"]))
    # knee: the knee of what is left, repeatedly, so the runner-up is the knee had the first not been there
    left = sorted(members, key=lambda m: m["trial"])
    names, directions = [o["name"] for o in objectives], [o["direction"] for o in objectives]
    ordered = []
    while left:
        ordered.append(left.pop(knee([[member_value(m, n) for n in names] for m in left], directions)))
    return ordered


def pick(members: list[Member], objectives: list[dict[str, str]], *, rule: str = "auc",
         constraints: Constraints = Constraints(), metric: tuple[str, str] = ("auc", "AUC")) -> Choice:
    """The best entry under `rule` among those meeting `constraints`; NoFeasibleTrial when none does. `metric`:
    the task's primary validation metric (name, label)."""
    if not members:
        raise StudyError("the study's front is empty (no trial completed), so there is nothing to pick")
    ordered = rank([m for m in members if not constraints.broken(m)], rule, objectives, metric[0])
    if not ordered:
        closest = sorted(members, key=lambda m: (constraints.shortfall(m), m["trial"]))[:3]
        listed = ", ".join(f"trial {m['trial']} (p95 {member_value(m, 'latency_p95'):.3f} ms, "
                           f"sensitivity {member_value(m, 'sensitivity'):.3f})" for m in closest)
        raise NoFeasibleTrial(f"no trial meets {constraints.describe()}; closest: {listed}", closest)
    binding = {}
    for flag in ("--max-latency-ms", "--min-sensitivity"):
        looser = constraints.without(flag)
        if looser != constraints:
            top = rank([m for m in members if not looser.broken(m)], rule, objectives, metric[0])[0]
            if top["trial"] != ordered[0]["trial"]:
                binding[flag] = top
    return Choice(rule=rule, constraints=constraints, chosen=ordered[0], feasible=len(ordered), total=len(members),
                  runner_up=ordered[1] if len(ordered) > 1 else None, binding=binding, metric=metric)


def _trade(a: Member, b: Member, metric: tuple[str, str] = ("auc", "AUC")) -> str:
    """What `a` gains or gives up against `b`, in the task's primary metric and p95 latency."""
    auc = member_value(a, metric[0]) - member_value(b, metric[0])
    ms = member_value(a, "latency_p95") - member_value(b, "latency_p95")
    return (f"{abs(auc):.4f} {metric[1]} {'higher' if auc >= 0 else 'lower'} and {abs(ms):.3f} ms "
            f"{'slower' if ms > 0 else 'faster'} at p95 than trial {b['trial']}")


def _label(m: Member, metric: tuple[str, str] = ("auc", "AUC")) -> str:
    return (f"trial {m['trial']} ({metric[1]} {member_value(m, metric[0]):.4f}, p95 {member_value(m, 'latency_p95'):.3f} ms, "
            f"sensitivity {member_value(m, 'sensitivity'):.3f})")


def explain(choice: Choice, study: str) -> list[str]:
    """The choice as lines a reviewer can check: what, on which numbers, under which rule, and at what cost."""
    m, val, lat = choice.chosen, choice.chosen["metrics"]["val"], choice.chosen["latency"]
    kind = f"baseline {m['baseline']}" if m.get("baseline") else "front member"
    lines = [
        f"picked trial {m['trial']} ({kind}): {m.get('summary') or m['spec']['family']}",
        "  validation: " + (f"{choice.metric[1]} {member_value(m, choice.metric[0]):.4f}, " if choice.metric[0] != "auc"
                            else "") +
        f"AUC {val['auc']:.4f}, sensitivity {val['sensitivity']:.3f}, specificity "
        f"{val['specificity']:.3f} at threshold {val['threshold']:.4f} on the uncalibrated score (`nas export` "
        "calibrates it: the model card gives the same operating point on the calibrated score)",
        f"  latency: p95 {lat['p95_ms']:.3f} ms, p50 {lat['p50_ms']:.3f} ms ({lat['method']}, {lat['backend']}, "
        f"{lat['precision']}, batch {lat['batch']}, on {lat['device']})",
        f"  rule: {rule_text(choice)}, among " + (
            f"{choice.feasible} of {choice.total} candidates that meet {choice.constraints.describe()}"
            if choice.constraints != Constraints() else f"all {choice.total} candidates (no constraints given)"),
    ]
    lines.append("  runtime: " + _runtime_text(m))
    if lat["method"] == "estimated":
        lines.append("  note: this latency is an estimate, not a measurement on the target; measure it before use")
    limits = {"--max-latency-ms": choice.constraints.max_latency_ms,
              "--min-sensitivity": choice.constraints.min_sensitivity}
    for flag, other in choice.binding.items():
        lines.append(f"  binding: {flag} {limits[flag]:g}; without it the pick would be {_label(other, choice.metric)}, "
                     f"so this pick is {_trade(m, other, choice.metric)}")
    if not choice.binding and choice.constraints != Constraints():
        lines.append("  binding: none (the same trial wins without the constraints)")
    if choice.runner_up is not None:
        lines.append(f"  next candidate: {_label(choice.runner_up, choice.metric)}; this pick is "
                     f"{_trade(m, choice.runner_up, choice.metric)}")
    lines.append(f"  ship it: nas export --study {study} --trial {m['trial']} --out shipped/{study}-{m['trial']}")
    return lines


def rule_text(choice: Choice) -> str:
    """The rule in words, naming the task's primary metric."""
    name, label = choice.metric
    return f"highest validation {label}" if choice.rule == "auc" and name != "auc" else RULE_TEXT[choice.rule]


def _runtime_text(m: Member) -> str:
    """The runtime and precision the entry ships with and what the others measured (settled point 19)."""
    if not m.get("runtime_choice"):
        return f"ships with {m['latency']['backend']} {m['latency']['precision']} (the only runtime measured)"
    choice = RuntimeChoice.model_validate(m["runtime_choice"])
    return (f"ships with {choice.shipped}, the fastest measured (`nas export` writes its artifact); other runtimes "
            f"p50: {choice.others()}")


def brief(m: Member) -> dict[str, Any]:
    """The fields of an entry that a decision rests on, for --json output."""
    return {"trial": m["trial"], "summary": m.get("summary"), "is_baseline": m["is_baseline"],
            "val": m["metrics"]["val"],
            "latency": {k: m["latency"][k] for k in ("p50_ms", "p95_ms", "p99_ms", "method", "backend", "device")},
            "runtime": {"runtime": m["latency"]["backend"], "precision": m["latency"]["precision"],
                        "choice_reason": (m.get("runtime_choice") or {}).get("reason")}}


def load_pareto(results: Path, study: str) -> dict[str, Any]:
    """The study's pareto.json; errors name the studies that exist, or say the search has not finished."""
    folder = study_dir(results, study)
    if not (folder / "pareto.json").exists():
        raise StudyError(f"study {study!r} has no pareto.json yet: it is written when `nas search` finishes")
    return read_json(folder / "pareto.json")
