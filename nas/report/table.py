"""The Pareto front as a plain-text table for the terminal."""

from __future__ import annotations

from typing import Any


def front_table(doc: dict[str, Any]) -> str:
    detection = doc.get("task") == "nodule"  # AUC is the second stage's, per patch; CPM is the detector's
    rows = [("trial", "model", "val AUC", "test AUC", "sens", "spec", "p50 ms", "p95 ms", "params", "MMACs")
            + (("val CPM", "test CPM") if detection else ())]
    reference = {m["trial"] for m in doc["members"]}
    for m in doc["members"] + [b for b in doc.get("baselines", []) if b["trial"] not in reference]:
        val, test, lat = m["metrics"]["val"], m["metrics"]["test"], m["latency"]
        spec = m["spec"]
        family = spec.get("family") or "+".join(spec[s]["family"] for s in ("screen", "classify"))  # two stages
        name = (m.get("baseline") or family) + ("" if m["trial"] in reference else " (off front)")
        rows.append((
            str(m["trial"]), name, f"{val['auc']:.4f}", f"{test['auc']:.4f}", f"{test['sensitivity']:.3f}",
            f"{test['specificity']:.3f}", f"{lat['p50_ms']:.3f}", f"{lat['p95_ms']:.3f}", f"{m['params']:,}",
            f"{m['macs'] / 1e6:.1f}",
        ) + ((f"{val['cpm']:.3f}", f"{test['cpm']:.3f}") if detection else ()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    methods = {m["latency"]["method"] for m in doc["members"] + doc.get("baselines", [])}
    if "estimated" in methods:
        lines.append(f"latencies are ESTIMATED for {doc['hardware']} (a calibrated model of the device, not a "
                     "measurement); measure on the device with nas agent and --device-url")
    return "\n".join(lines)
