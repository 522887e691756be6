"""`nas pick`: choose one model from a finished study's front under latency and sensitivity constraints."""

from __future__ import annotations

import argparse

from nas.cli._common import add_json_option, add_study_options, err, print_json
from nas.defaults import PICK_RULES

EPILOG = """examples:
  nas pick --study xray-cpu --max-latency-ms 0.5
  nas pick --study xray-cpu --min-sensitivity 0.97 --prefer latency
  nas pick --study xray-cpu --prefer knee --json

It exits with 1 and lists the closest trials when nothing meets the constraints."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pick", help="choose a model from the front", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Choose one trial from pareto.json (front members and baselines) on validation metrics and "
                    "the re-measured p95 latency, and say why: the rule, the binding constraint, and what the "
                    "choice gives up against the next candidate.",
    )
    add_study_options(p, study_required=True, storage=False)  # reads pareto.json only
    p.add_argument("--max-latency-ms", type=float, help="p95 latency budget on the study's hardware")
    p.add_argument("--min-sensitivity", type=float, help="lowest acceptable validation sensitivity")
    p.add_argument("--prefer", choices=PICK_RULES, default="auc",
                   help="auc: most accurate; latency: fastest; knee: the balanced trade-off (default: auc)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.report.pick import Constraints, NoFeasibleTrial, brief, candidates, explain, load_pareto, pick

    doc = load_pareto(args.results, args.study)
    constraints = Constraints(max_latency_ms=args.max_latency_ms, min_sensitivity=args.min_sensitivity)
    head = {"schema_version": 1, "study": doc["study"], "rule": args.prefer,
            "constraints": {"max_latency_ms": args.max_latency_ms, "min_sensitivity": args.min_sensitivity}}
    try:
        primary = doc.get("primary_metric") or {"name": "auc", "label": "AUC"}  # absent before pareto.json said it
        choice = pick(candidates(doc), doc["objectives"], rule=args.prefer, constraints=constraints,
                      metric=(primary["name"], primary["label"]))
    except NoFeasibleTrial as exc:
        if not args.json:
            raise
        err(f"error: {exc}")
        print_json({**head, "chosen": None, "closest": [brief(m) for m in exc.closest]})
        return exc.exit_code
    if args.json:
        print_json({**head, "chosen": brief(choice.chosen),
                    "runner_up": brief(choice.runner_up) if choice.runner_up else None,
                    "binding": {flag: brief(m) for flag, m in choice.binding.items()},
                    "feasible": choice.feasible, "candidates": choice.total})
    else:
        print("\n".join(explain(choice, doc["study"])))
    return 0
