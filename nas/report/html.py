"""A self-contained interactive report (plotly.js embedded): every trial, the front, the baselines."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from nas._io import atomic_write_text
from nas.search.objectives import OBJECTIVES
from nas.search.result import TrialResult


def _axes(doc: dict[str, Any]) -> tuple[str, str]:
    """x: the first minimised objective (latency by default), y: the first maximised one (AUC)."""
    names = [o["name"] for o in doc["objectives"]]
    minimized = [o["name"] for o in doc["objectives"] if o["direction"] == "minimize"] or names
    maximized = [o["name"] for o in doc["objectives"] if o["direction"] == "maximize"] or names
    return minimized[0], maximized[0]


def _hover(r: TrialResult, test: dict[str, float] | None = None) -> str:
    v, m = r.metrics["val"], r.measurement
    lines = [f"<b>trial {r.trial}</b> {html.escape(r.spec.summary())}",
             f"val AUC {v['auc']:.4f}, sens {v['sensitivity']:.3f}, spec {v['specificity']:.3f} @ {v['threshold']:.3f}"]
    if test:
        lines.append(f"test AUC {test['auc']:.4f}, sens {test['sensitivity']:.3f}, spec {test['specificity']:.3f}")
    lines += [f"latency p50 {m.p50_ms:.3f} / p95 {m.p95_ms:.3f} / p99 {m.p99_ms:.3f} ms ({m.method})",
              f"{html.escape(m.backend)} {html.escape(m.runtime_version)}, {m.precision}, batch {m.batch}, "
              f"{m.threads} threads, {html.escape(m.device)}",
              f"params {r.params:,}, MACs {r.macs / 1e6:.1f} M"]
    return "<br>".join(lines)


def _load_trials(results_dir: Path) -> list[TrialResult]:
    out = []
    for path in sorted((results_dir / "trials").glob("*/result.json"), key=lambda p: int(p.parent.name)):
        out.append(TrialResult.model_validate_json(path.read_text()))
    return out


def build_figure(doc: dict[str, Any], trials: list[TrialResult]) -> go.Figure:
    x_name, y_name = _axes(doc)
    x_obj, y_obj = OBJECTIVES.get(x_name), OBJECTIVES.get(y_name)
    members = {m["trial"]: m for m in doc["members"]}
    fig = go.Figure()
    others = [r for r in trials if r.trial not in members and not r.spec.baseline]
    fig.add_trace(go.Scatter(
        x=[x_obj.value(r) for r in others], y=[y_obj.value(r) for r in others], mode="markers", name="trials",
        marker={"color": "rgba(120,120,120,0.45)", "size": 8}, hovertext=[_hover(r) for r in others],
        hoverinfo="text",
    ))
    front = sorted((r.model_copy(update={"measurement": r.measurement.model_validate(members[r.trial]["latency"])})
                    for r in trials if r.trial in members), key=x_obj.value)
    fig.add_trace(go.Scatter(
        x=[x_obj.value(r) for r in front], y=[y_obj.value(r) for r in front], mode="lines+markers",
        name="Pareto front (re-measured)", line={"shape": "hv", "color": "#1f77b4"},
        marker={"size": 11, "color": "#1f77b4", "line": {"width": 1, "color": "white"}},
        hovertext=[_hover(r, members[r.trial]["metrics"]["test"]) for r in front], hoverinfo="text",
    ))
    baselines = {b["trial"]: b for b in doc.get("baselines", [])}
    base = [r for r in trials if r.spec.baseline]
    fig.add_trace(go.Scatter(
        x=[x_obj.value(r) for r in base], y=[y_obj.value(r) for r in base], mode="markers+text", name="baselines",
        text=[r.spec.baseline for r in base], textposition="top center",
        marker={"symbol": "star", "size": 15, "color": "#d62728"},
        hovertext=[_hover(r, baselines.get(r.trial, {}).get("metrics", {}).get("test")) for r in base],
        hoverinfo="text",
    ))
    if doc.get("knee_trial") in members:
        k = next(r for r in front if r.trial == doc["knee_trial"])
        fig.add_annotation(x=x_obj.value(k), y=y_obj.value(k), text="knee", showarrow=True, arrowhead=2,
                           xref="x", yref="y")
    budget = doc.get("constraints", {}).get("max_latency_ms")
    if budget and x_name.startswith("latency"):
        fig.add_vline(x=budget, line_dash="dash", line_color="#ff7f0e", annotation_text="latency budget")
    fig.update_layout(
        title=f"{doc['study']}: {y_obj.description} vs {x_obj.description}",
        xaxis_title=f"{x_name} ({x_obj.direction})", yaxis_title=f"{y_name} ({y_obj.direction})",
        template="plotly_white", hoverlabel={"align": "left"}, height=620,
        legend={"orientation": "h", "y": -0.15},
    )
    if x_name.startswith("latency") or x_name in ("params", "macs"):
        fig.update_xaxes(type="log")
    return fig


def _table(doc: dict[str, Any]) -> str:
    head = ("trial", "model", "val AUC", "test AUC", "test sens", "test spec", "threshold", "p50 ms", "p95 ms",
            "p99 ms", "params", "MMACs")
    rows = []
    for m in doc["members"]:
        val, test, lat = m["metrics"]["val"], m["metrics"]["test"], m["latency"]
        cells = (m["trial"], m["summary"], f"{val['auc']:.4f}", f"{test['auc']:.4f}", f"{test['sensitivity']:.3f}",
                 f"{test['specificity']:.3f}", f"{val['threshold']:.3f}", f"{lat['p50_ms']:.3f}",
                 f"{lat['p95_ms']:.3f}", f"{lat['p99_ms']:.3f}", f"{m['params']:,}", f"{m['macs'] / 1e6:.1f}")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return f'<table id="front-table"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def write_report(results_dir: Path) -> Path:
    """results/<study>/report.html from pareto.json and the trial records beside it."""
    results_dir = Path(results_dir)
    doc = json.loads((results_dir / "pareto.json").read_text())
    trials = _load_trials(results_dir)
    if not trials:
        body = "<p>No trial has completed in this study yet, so there is no front to show.</p>"
    else:
        fig = build_figure(doc, trials)
        plot = pio.to_html(fig, include_plotlyjs=True, full_html=False, div_id="pareto-plot",
                           config={"displaylogo": False})
        body = plot + "<h2>Pareto front</h2>" + _table(doc)
    counts = ", ".join(f"{v} {k.lower()}" for k, v in doc.get("trials", {}).items())
    device = doc["members"][0]["latency"]["device"] if doc["members"] else "n/a"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nas report: {html.escape(doc['study'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f3f3f3; }} td:nth-child(2) {{ font-family: monospace; font-size: 0.85em; }}
.meta {{ color: #555; }}
</style></head><body>
<h1>nas study <code>{html.escape(doc['study'])}</code></h1>
<p class="meta">task {html.escape(doc['task'])} &middot; hardware profile {html.escape(doc['hardware'])}
({html.escape(device)}) &middot; trials: {html.escape(counts)} &middot; data {html.escape(str(doc['data']['path']))}
&middot; validation metrics guide the search; test metrics are computed once for the front and baselines
&middot; operating threshold: target sensitivity {doc['target_sensitivity']} on validation</p>
{body}
</body></html>
"""
    return atomic_write_text(results_dir / "report.html", page)
