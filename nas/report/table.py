"""The Pareto front as a plain-text table for the terminal."""

from __future__ import annotations

from typing import Any

from nas.tasks import get_task


def front_table(doc: dict[str, Any]) -> str:
    """One row per member (and baseline off the front); the task names its metrics and adds its own columns."""
    task = get_task(doc["task"])
    extra, label = task.table_metrics, task.label
    rows = [("trial", "model", f"val {label('auc')}", f"test {label('auc')}", "sens", "spec", "p50 ms", "p95 ms",
             "params", "MMACs") + tuple(f"{split} {label(metric)}" for metric in extra for split in ("val", "test"))]
    reference = {m["trial"] for m in doc["members"]}
    for m in doc["members"] + [b for b in doc.get("baselines", []) if b["trial"] not in reference]:
        val, test, lat = m["metrics"]["val"], m["metrics"]["test"], m["latency"]
        spec = m["spec"]
        family = spec.get("family") or "+".join(stage["family"] for stage in spec.values()  # a multi-stage spec
                                                if isinstance(stage, dict) and "family" in stage)
        name = (m.get("baseline") or family) + ("" if m["trial"] in reference else " (off front)")
        rows.append((
            str(m["trial"]), name, f"{val['auc']:.4f}", f"{test['auc']:.4f}", f"{test['sensitivity']:.3f}",
            f"{test['specificity']:.3f}", f"{lat['p50_ms']:.3f}", f"{lat['p95_ms']:.3f}", f"{m['params']:,}",
            f"{m['macs'] / 1e6:.1f}",
        ) + tuple(f"{metrics[metric]:.3f}" for metric in extra for metrics in (val, test)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    methods = {m["latency"]["method"] for m in doc["members"] + doc.get("baselines", [])}
    if "estimated" in methods:
        lines.append(f"latencies are ESTIMATED for {doc['hardware']} (a calibrated model of the device, not a "
                     "measurement); measure on the device with nas agent and --device-url")
    return "\n".join(lines)
