"""A self-contained report (plotly.js embedded, SVG plots only, settled point 13) that turns a study into a choice.

It reads only stored results (pareto.json, settings.json and trials/<n>/), so it works on a finished study, on
a running one (the front is then computed from search-time numbers, and the page says so) and on a copy.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from nas._io import atomic_write_text, read_json
from nas.errors import ConfigError, StudyError
from nas.hardware import Measurement
from nas.hardware.runtime_choice import RuntimeChoice
from nas.search.constraints import Constraints, result_constraints
from nas.search.hypervolume import hypervolume_history
from nas.search.objectives import OBJECTIVES, Objective
from nas.search.pareto import knee, non_dominated
from nas.search.result import TrialResult, measurement_from_entry
from nas.spec import CompressionSpec, Spec

__all__ = ["FRONT_TRACE", "StudyView", "build_figure", "build_hypervolume", "build_pairs", "load_view",
           "study_dir", "write_report"]

FRONT_TRACE = "Pareto front"
"""The name of the front's trace; the browser test finds the front's points by it."""
FADED = "rgba(120,120,120,0.40)"
FRONT_COLOR, BASELINE_COLOR, STOPPED_COLOR, LIMIT_COLOR = "#1f77b4", "#d62728", "#ff7f0e", "#9467bd"
LOG_AXES = ("latency_p50", "latency_p95", "params", "macs")
FRACTIONS = ("auc", "cpm", "sensitivity", "specificity")
"""Objectives that are shares (0..1): their axis never runs below 0, even when every trial scored 0."""
# The objectives a trial stopped before training still has a value for: it was measured, not trained.
FROM_MEASUREMENT = {"latency_p50": lambda m: m.p50_ms, "latency_p95": lambda m: m.p95_ms,
                    "peak_memory": lambda m: m.peak_memory_mb}
FILES = (("spec", "spec.json"), ("result", "result.json"), ("test", "test_metrics.json"),
         ("latency", "remeasured.json"), ("onnx", "model.onnx"), ("weights", "model.pt"))


@dataclass(frozen=True)
class Point:
    """One trained trial as drawn; front members and baselines carry their re-measured latency and test metrics."""

    result: TrialResult
    test: dict[str, float] | None
    member: bool
    note: str
    """Why it sits where it does: on the front, dominated, or the constraint it breaks."""
    latency_source: str


@dataclass(frozen=True)
class Stopped:
    """A trial without a result: stopped before training (over budget), failed, or still running."""

    trial: int
    state: str
    reason: str
    measurement: Measurement | None


@dataclass(frozen=True)
class StudyView:
    """Everything the page shows, read from the study folder."""

    folder: Path
    doc: dict[str, Any]
    """pareto.json, or the same shape built from settings.json and the trials while no pareto.json exists."""
    final: bool
    points: list[Point]
    stopped: list[Stopped]
    searched: list[TrialResult]
    """Every trained trial with the numbers the search saw, for the convergence curve."""

    @property
    def objectives(self) -> list[Objective]:
        return [OBJECTIVES.get(o["name"]) for o in self.doc["objectives"]]

    @property
    def estimated_front(self) -> bool:
        return any(m["latency"]["method"] == "estimated" for m in self.doc["members"])


def study_dir(results: Path, study: str) -> Path:
    """results/<study>, or an error naming the studies that exist there."""
    folder = Path(results) / study
    if not (folder / "settings.json").exists() and not (folder / "pareto.json").exists():
        studies = sorted({p.parent.name for p in Path(results).glob("*/settings.json")}
                         | {p.parent.name for p in Path(results).glob("*/pareto.json")})
        raise StudyError(f"no study {study!r} under {results}/; studies there: {', '.join(studies) or 'none'}")
    return folder


def _breaks(r: TrialResult, constraints: dict[str, Any]) -> list[str]:
    limits = Constraints(max_latency_ms=constraints.get("max_latency_ms"),
                         min_sensitivity=constraints.get("min_sensitivity"))
    text = {"max_latency_ms": lambda: f"p95 {r.measurement.p95_ms:.3f} ms over the {limits.max_latency_ms:g} ms budget",
            "min_sensitivity": lambda: f"val sensitivity {r.metrics['val']['sensitivity']:.3f} under the "
                                       f"{limits.min_sensitivity:g} minimum"}
    return [text[key]() for key, value in result_constraints(limits, r).items() if value > 0]


def _read_trials(folder: Path) -> tuple[list[TrialResult], list[Stopped]]:
    results, stopped = [], []
    trial_dirs = [p for p in (folder / "trials").glob("*") if p.name.isdigit()] if (folder / "trials").is_dir() else []
    for d in sorted(trial_dirs, key=lambda p: int(p.name)):
        if (d / "result.json").exists():
            results.append(TrialResult.model_validate_json((d / "result.json").read_text()))
            continue
        measured = d / "measurement.json"
        measurement = Measurement.model_validate_json(measured.read_text()) if measured.exists() else None
        for name, state in (("infeasible.json", "infeasible"), ("stopped.json", "stopped early"),
                            ("failure.json", "failed")):
            if (d / name).exists():
                record = json.loads((d / name).read_text())
                kind = "interrupted" if record.get("kind") == "interrupted" else state
                stopped.append(Stopped(int(d.name), kind, record["reason"], measurement))
                break
        else:
            stopped.append(Stopped(int(d.name), "running", "no result yet (running, or its process was killed)",
                                   measurement))
    return results, stopped


def _entry(r: TrialResult) -> dict[str, Any]:
    """A pareto.json-shaped entry from search-time numbers (no re-measurement, no test metrics yet)."""
    return {"trial": r.trial, "is_baseline": r.spec.baseline is not None, "baseline": r.spec.baseline,
            "summary": r.spec.summary(), "spec": r.spec.model_dump(mode="json"), "params": r.params, "macs": r.macs,
            "metrics": {"val": r.metrics["val"], "test": None}, "latency": r.measurement.model_dump()}


def _provisional_doc(folder: Path, results: list[TrialResult], stopped: list[Stopped]) -> dict[str, Any]:
    """The front as it stands while the search runs: finalize's rules on the numbers measured during the search."""
    settings = json.loads((folder / "settings.json").read_text())
    objectives = [OBJECTIVES.get(n) for n in settings["objectives"]]
    constraints = {k: settings.get(k) for k in ("max_latency_ms", "min_sensitivity")}
    feasible = [r for r in results if not _breaks(r, constraints)]
    values = [[o.value(r) for o in objectives] for r in feasible]
    directions = [o.direction for o in objectives]
    front = [r for r, on in zip(feasible, non_dominated(values, directions) if feasible else []) if on]
    states = ["COMPLETE"] * len(results) + [{"infeasible": "PRUNED", "stopped early": "PRUNED",
                                             "running": "RUNNING"}.get(s.state, "FAIL")
                                            for s in stopped]
    return {
        "study": folder.name, "task": settings["task"], "hardware": settings["hardware"],
        "objectives": [{"name": o.name, "direction": o.direction} for o in objectives], "constraints": constraints,
        "target_sensitivity": settings["target_sensitivity"], "members": [_entry(r) for r in front],
        "baselines": [_entry(r) for r in results if r.spec.baseline],
        "knee_trial": front[knee([[o.value(r) for o in objectives] for r in front], directions)].trial
        if front else None,
        "trials": {s: states.count(s) for s in sorted(set(states))}, "data": {"path": settings["data"]},
    }


def load_view(folder: Path) -> StudyView:
    """Read a study folder into what the page shows."""
    folder = Path(folder)
    results, stopped = _read_trials(folder)
    final = (folder / "pareto.json").exists()
    doc = read_json(folder / "pareto.json") if final else _provisional_doc(folder, results, stopped)
    members = {m["trial"] for m in doc["members"]}
    stored = {e["trial"]: e for e in doc.get("baselines", []) + doc["members"]}
    searched = {r.trial: r for r in results}
    source = "re-measured at the end of the search" if final else "measured during the search (not re-measured yet)"
    points = []
    for number in sorted(set(searched) | set(stored)):
        if number in stored:  # front members and baselines: the numbers pareto.json holds
            e = stored[number]
            stored_numbers = {"measurement": measurement_from_entry(e["latency"]),
                              "metrics": {"val": e["metrics"]["val"]}}
            result = (searched[number].model_copy(update=stored_numbers) if number in searched else
                      TrialResult(trial=number, spec=Spec.model_validate(e["spec"]), params=e["params"],
                                  macs=e["macs"], **stored_numbers))
            test = e["metrics"].get("test")
        else:
            result, test = searched[number], None
        broken = _breaks(result, doc.get("constraints", {}))
        note = ("on the Pareto front" if number in members
                else ("breaks: " + "; ".join(broken)) if broken else "dominated (off the front)")
        points.append(Point(result, test, number in members, note,
                            source if number in stored else "measured during the search"))
    return StudyView(folder, doc, final, points, stopped, [searched[n] for n in sorted(searched)])


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _hover(p: Point) -> str:
    r, m, v, s = p.result, p.result.measurement, p.result.metrics["val"], p.result.spec
    test = p.test
    lines = [
        f"<b>trial {r.trial}</b>" + (f" · baseline {html.escape(s.baseline)}" if s.baseline else "")
        + f" · {html.escape(p.note)}",
        html.escape(s.summary()),
        f"compression: {html.escape(_compression_text(r))} · training: lr "
        f"{s.training.lr:.2g}, {s.training.epochs} epoch(s), augment {s.training.augment:.2f}",
        f"val: AUC {v['auc']:.4f} · sens {v['sensitivity']:.3f} · spec {v['specificity']:.3f} "
        f"@ threshold {v['threshold']:.4f} (uncalibrated score; the export's card gives the calibrated one)",
        (f"test: AUC {test['auc']:.4f} · sens {test['sensitivity']:.3f} · spec {test['specificity']:.3f}" if test
         else "test: not computed (only front members and baselines are scored on test)"),
        f"latency p50 {m.p50_ms:.3f} · p95 {m.p95_ms:.3f} · p99 {m.p99_ms:.3f} ms ({m.method}, "
        f"{html.escape(p.latency_source)})",
        f"{html.escape(m.backend)} {html.escape(m.runtime_version)} · {m.precision} · batch {m.batch} · "
        f"{m.threads or 'default'} threads · {html.escape(m.device)} · load {m.load_avg:.1f}",
        f"params {r.params:,} · MACs {r.macs / 1e6:.1f} M",
    ]
    float_val = r.float_metrics.get("val")
    if float_val and s.compression.quant != "fp32":
        lines.append(f"val AUC float {float_val['auc']:.4f} → {s.compression.quant} {v['auc']:.4f}")
    if r.runtime_choice is not None:
        lines.append(f"ships with {html.escape(r.runtime_choice.shipped)} (fastest measured) · other runtimes p50: "
                     f"{html.escape(r.runtime_choice.others())}")
    if len(r.latency_by_precision) > 1:
        lines.append("p50 by precision: " + ", ".join(f"{k} {x.p50_ms:.3f} ms" for k, x in r.latency_by_precision.items()))
    lines += [f'<span style="color:#b30000">⚠ {html.escape(flag)}</span>' for flag in r.flags]
    return "<br>".join(lines)


def _compression_text(r: TrialResult) -> str:
    c = r.spec.compression
    parts = [f"prune {c.prune_ratio:.0%} ({len(c.channels)} layers), fine-tune {c.finetune_epochs} epoch(s)"
             if c.prune_ratio else "no pruning"]
    if c.distill:
        parts.append(f"distilled from {r.teacher} (T {c.temperature:.1f}, alpha {c.alpha:.2f})" if r.teacher
                     else "distillation asked for, no teacher yet")
    parts.append(c.quant + (f" ({c.calibration} calibration)" if c.quant == "int8" else ""))
    return ", ".join(parts)


def _compression_table(results: list[TrialResult]) -> str:
    """Per member: what each compression step cost in validation AUC and gave in latency."""
    head = ("trial", "compression", "val AUC float", "val AUC deployed", "Δ AUC", "p50 fp32 ms",
            "p50 deployed ms", "speed-up", "notes")
    rows = []
    for r in results:
        float_auc = (r.float_metrics.get("val") or r.metrics["val"])["auc"]
        deployed_auc = r.metrics["val"]["auc"]
        fp32 = r.latency_by_precision.get("fp32")  # both from the trial's one measuring session
        deployed = r.latency_by_precision.get(r.spec.compression.quant, r.measurement)
        cells = (r.trial, _compression_text(r), _fmt(float_auc, 4), _fmt(deployed_auc, 4),
                 f"{deployed_auc - float_auc:+.4f}", _fmt(fp32.p50_ms if fp32 else None, 3),
                 _fmt(deployed.p50_ms, 3), f"{fp32.p50_ms / deployed.p50_ms:.2f}x" if fp32 else "–",
                 "; ".join(r.flags))
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f'<th title="click to sort">{h}</th>' for h in head)
    return (f'<table id="compression-table" class="sortable"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _markers(points: list[Point], x: Objective, y: Objective, *, name: str, color: str, size: int,
             symbol: str = "circle", mode: str = "markers", **kwargs: Any) -> go.Scatter:
    """One trace; estimated latencies get the open form of the symbol, so they never pass for measured ones."""
    symbols = [symbol + ("-open" if p.result.measurement.method == "estimated" else "") for p in points]
    return go.Scatter(
        x=[x.value(p.result) for p in points], y=[y.value(p.result) for p in points], mode=mode, name=name,
        marker={"color": color, "size": size, "symbol": symbols, "line": {"width": 1.5, "color": "white"}},
        hovertext=[_hover(p) for p in points], hoverinfo="text", customdata=[p.result.trial for p in points],
        **kwargs,
    )


def _outline(members: list[Point], x: Objective, y: Objective) -> go.Scatter:
    """The front's staircase in the two objectives shown (members of a wider front may sit inside it)."""
    values = [(x.value(p.result), y.value(p.result)) for p in members]
    on = non_dominated(values, [x.direction, y.direction]) if values else []
    line = sorted(v for v, keep in zip(values, on) if keep)
    return go.Scatter(x=[v[0] for v in line], y=[v[1] for v in line], mode="lines", hoverinfo="skip",
                      line={"shape": "hv" if x.direction == "minimize" else "vh", "color": FRONT_COLOR, "width": 1.5},
                      showlegend=False, name="front outline")


def _add_stopped(fig: go.Figure, stopped: list[Stopped], x: Objective, y: Objective) -> None:
    """Trials measured but never fully trained (infeasible, stopped early at a rung, failed), as a rug along the
    latency axis: they have no final metric for the other."""
    drawn = [s for s in stopped if s.measurement is not None]
    axis = "x" if x.name in FROM_MEASUREMENT else "y" if y.name in FROM_MEASUREMENT else None
    if axis is None or not drawn:
        return
    obj = x if axis == "x" else y
    values, rug = [FROM_MEASUREMENT[obj.name](s.measurement) for s in drawn], [0.02] * len(drawn)
    hover = [f"<b>trial {s.trial}</b> · {s.state}, not fully trained<br>{html.escape(s.reason)}<br>"
             f"{html.escape(s.measurement.short())}" for s in drawn]  # type: ignore[union-attr]
    coords = {"x": values, "y": rug, "yaxis": "y2"} if axis == "x" else {"x": rug, "y": values, "xaxis": "x2"}
    fig.add_trace(go.Scatter(**coords, mode="markers", name="measured, not fully trained (no final AUC)", hovertext=hover,
                             hoverinfo="text", marker={"symbol": "x-thin-open", "size": 11, "color": STOPPED_COLOR,
                                                       "line": {"width": 2, "color": STOPPED_COLOR}}))
    overlay = {"overlaying": "y" if axis == "x" else "x", "range": [0, 1], "visible": False, "fixedrange": True}
    fig.update_layout(**({"yaxis2": overlay} if axis == "x" else {"xaxis2": overlay}))


def _on_axis(obj: Objective, value: float) -> float:
    """Where a value sits for an annotation, which plotly places in log10 units on a log axis (shapes, in data)."""
    return math.log10(value) if obj.name in LOG_AXES else value


def _add_limits(fig: go.Figure, doc: dict[str, Any], x: Objective, y: Objective) -> None:
    """The study's constraints as dashed lines on the axes they apply to (the budget is on p95 latency)."""
    constraints = doc.get("constraints") or {}
    limits = {"latency_p95": ("max_latency_ms", "latency budget {:g} ms"),
              "sensitivity": ("min_sensitivity", "min sensitivity {:g}")}
    for obj, across in ((x, True), (y, False)):
        key, label = limits.get(obj.name, (None, ""))
        if key is None or constraints.get(key) is None:
            continue
        value = constraints[key]
        (fig.add_vline if across else fig.add_hline)(value, line_dash="dash", line_color=LIMIT_COLOR)
        where = ({"x": _on_axis(obj, value), "xref": "x", "y": 1, "yref": "y domain", "xanchor": "left"} if across
                 else {"x": 0, "xref": "x domain", "y": _on_axis(obj, value), "yref": "y", "xanchor": "left"})
        fig.add_annotation(text=label.format(value), showarrow=False, font_color=LIMIT_COLOR, yanchor="bottom",
                           **where)


def _axis_title(obj: Objective) -> str:
    """The name and direction on the axis, the description smaller beneath, so a long one is not clipped."""
    better = "lower" if obj.direction == "minimize" else "higher"
    return f"{obj.name} ({better} is better)<br><sup>{html.escape(obj.description)}</sup>"


def build_figure(view: StudyView, x: Objective, y: Objective) -> go.Figure:
    """Every trained trial in two objectives: front members bold, the rest faded, baselines starred."""
    doc = view.doc
    others = [p for p in view.points if not p.member and not p.result.spec.baseline]
    members = [p for p in view.points if p.member]
    baselines = [p for p in view.points if p.result.spec.baseline]
    fig = go.Figure()
    fig.add_trace(_markers(others, x, y, name="other trials (dominated or over a limit)", color=FADED, size=8))
    fig.add_trace(_outline(members, x, y))
    fig.add_trace(_markers(baselines, x, y, name="baselines", color=BASELINE_COLOR, size=20, symbol="star",
                           mode="markers+text", text=[p.result.spec.baseline for p in baselines],
                           textposition="top center"))
    # Drawn last: a baseline on the front shows as a star with the front's dot at its centre.
    fig.add_trace(_markers(members, x, y, name=FRONT_TRACE, color=FRONT_COLOR, size=9))
    _add_stopped(fig, view.stopped, x, y)
    knee_point = next((p for p in members if p.result.trial == doc.get("knee_trial")), None)
    if knee_point is not None:
        fig.add_annotation(x=_on_axis(x, x.value(knee_point.result)), y=_on_axis(y, y.value(knee_point.result)),
                           text=f"knee: trial {knee_point.result.trial}", showarrow=True, arrowhead=2, ax=40, ay=40)
    _add_limits(fig, doc, x, y)
    source = "re-measured front" if view.final else "provisional front, search-time latencies"
    if view.estimated_front:
        source += "; <b>front latencies are estimates, not measurements</b> (open markers)"
    fig.update_layout(
        title={"text": f"{html.escape(doc['study'])}: {y.name} vs {x.name}<br><sup>{source}</sup>"},
        xaxis_title=_axis_title(x), yaxis_title=_axis_title(y), template="plotly_white", height=640,
        hoverlabel={"align": "left"}, legend={"orientation": "h", "y": -0.18},
    )
    fig.update_layout(xaxis_type="log" if x.name in LOG_AXES else "linear",
                      yaxis_type="log" if y.name in LOG_AXES else "linear")
    for axis, obj in (("xaxis", x), ("yaxis", y)):
        if obj.name in FRACTIONS:
            fig.update_layout({axis: {"rangemode": "nonnegative"}})
    return fig


def build_pairs(view: StudyView) -> go.Figure:
    """Every pair of the study's objectives as a small SVG scatter (parallel coordinates would need WebGL)."""
    objectives = view.objectives
    k = len(objectives) - 1
    fig = make_subplots(rows=k, cols=k, specs=[[{} if c <= r else None for c in range(k)] for r in range(k)],
                        horizontal_spacing=0.05, vertical_spacing=0.06)
    groups = [("other trials", [p for p in view.points if not p.member], FADED, 7, "circle"),
              (FRONT_TRACE, [p for p in view.points if p.member], FRONT_COLOR, 9, "circle"),
              ("baselines", [p for p in view.points if p.result.spec.baseline], BASELINE_COLOR, 11, "star")]
    for row, col in ((r, c) for r in range(k) for c in range(r + 1)):
        x, y = objectives[col], objectives[row + 1]
        for name, points, color, size, symbol in groups:
            fig.add_trace(_markers(points, x, y, name=name, color=color, size=size, symbol=symbol, legendgroup=name,
                                   showlegend=(row, col) == (0, 0)), row=row + 1, col=col + 1)
        fig.update_xaxes(type="log" if x.name in LOG_AXES else "linear", row=row + 1, col=col + 1,
                         title_text=x.name if row == k - 1 else None)
        fig.update_yaxes(type="log" if y.name in LOG_AXES else "linear", row=row + 1, col=col + 1,
                         title_text=y.name if col == 0 else None)
    fig.update_layout(template="plotly_white", height=260 * k + 120, hoverlabel={"align": "left"},
                      title={"text": "every pair of the study's objectives (front members in blue)"})
    return fig


def build_hypervolume(view: StudyView) -> go.Figure | None:
    """How the search converged: the hypervolume of the feasible front after each trial (None before any)."""
    objectives = view.objectives
    constraints = view.doc.get("constraints") or {}
    runs = [r for r in view.searched if not _breaks(r, constraints)]
    if not runs:
        return None
    history = hypervolume_history([[o.value(r) for o in objectives] for r in runs], [o.direction for o in objectives])
    last = max([r.trial for r in view.searched] + [s.trial for s in view.stopped])
    xs, ys = [r.trial for r in runs] + [last], history + history[-1:]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", line={"shape": "hv", "color": FRONT_COLOR},
                               name="hypervolume", hovertemplate="after trial %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(
        template="plotly_white", height=360, xaxis_title="trial number", yaxis_title="hypervolume (fraction of box)",
        title={"text": f"hypervolume of the feasible front over {', '.join(o.name for o in objectives)}"},
        yaxis_range=[0, 1.05], xaxis={"tickformat": "d", "dtick": 1 if last < 20 else None},
    )
    return fig


def _links(folder: Path, trial: int) -> str:
    """Relative links to a trial's stored files that exist, so the page keeps working when the folder moves."""
    base = folder / "trials" / str(trial)
    return " ".join(f'<a href="trials/{trial}/{file}">{label}</a>' for label, file in FILES if (base / file).exists())


def _table(entries: list[dict[str, Any]], folder: Path, table_id: str, row_class: str = "",
           primary: dict[str, str] | None = None) -> str:
    extra = [primary["name"]] if primary and primary["name"] != "auc" else []  # the task's own metric (nodule: CPM)
    head = ("trial", "model", "val AUC", "val sens", "val spec", "threshold (uncalibrated)", "test AUC", "test sens", "test spec",
            *(f"{split} {primary['label']}" for _ in extra for split in ("val", "test")),  # type: ignore[index]
            "p50 ms", "p95 ms", "p99 ms", "latency", "runtime", "other runtimes (p50)", "params", "MMACs",
            "files")
    row_open = f'<tr class="{row_class}">' if row_class else "<tr>"  # the class marks header and body rows
    rows = []
    for m in entries:
        val, test, lat = m["metrics"]["val"], m["metrics"].get("test") or {}, m["latency"]
        cells = [html.escape(str(c)) for c in (
            m["trial"], m.get("summary") or m["spec"]["family"], _fmt(val["auc"], 4), _fmt(val["sensitivity"], 3),
            _fmt(val["specificity"], 3), _fmt(val["threshold"], 4), _fmt(test.get("auc"), 4),
            _fmt(test.get("sensitivity"), 3), _fmt(test.get("specificity"), 3),
            *(_fmt(split.get(name), 3) for name in extra for split in (val, test)), _fmt(lat["p50_ms"], 3),
            _fmt(lat["p95_ms"], 3), _fmt(lat["p99_ms"], 3), lat["method"], *_runtime_cells(m, lat),
            f"{m['params']:,}",
            _fmt(m["macs"] / 1e6, 1))] + [_links(folder, m["trial"])]
        rows.append(row_open + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f'<th title="click to sort">{h}</th>' for h in head)
    return (f'<table id="{table_id}" class="sortable"><thead>{row_open}{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _runtime_cells(m: dict[str, Any], lat: dict[str, Any]) -> tuple[str, str]:
    """The runtime and precision an entry ships with, and what the other runtimes measured (settled point 19)."""
    if not m.get("runtime_choice"):
        return f"{lat['backend']} {lat['precision']}", "–"
    choice = RuntimeChoice.model_validate(m["runtime_choice"])
    return choice.shipped, choice.others()


SORT_JS = """
for (const th of document.querySelectorAll("table.sortable th")) {
  th.addEventListener("click", () => {
    const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    const dir = th.dataset.dir === "asc" ? -1 : 1;
    for (const other of table.querySelectorAll("th")) delete other.dataset.dir;
    th.dataset.dir = dir === 1 ? "asc" : "desc";
    const key = (row) => {
      const text = row.cells[col].textContent.replace(/,/g, "").trim();
      return /^-?[0-9.]+(e-?[0-9]+)?$/.test(text) ? Number(text) : text;
    };
    const order = (a, b) => typeof a !== typeof b ? (typeof a === "number" ? -1 : 1) : a < b ? -1 : a > b ? 1 : 0;
    [...body.rows].sort((a, b) => dir * order(key(a), key(b))).forEach((row) => body.appendChild(row));
  });
}
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1500px; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; } th { background: #f3f3f3; cursor: pointer; }
th[data-dir=asc]::after { content: " \\25B2"; } th[data-dir=desc]::after { content: " \\25BC"; }
td:nth-child(2) { font-family: monospace; font-size: 0.85em; max-width: 34em; }
tr.baseline td { background: #fff5f5; } .meta, .note { color: #555; } .warn { color: #b30000; }
"""


def _plot(fig: go.Figure, div_id: str, first: bool) -> str:
    return pio.to_html(fig, include_plotlyjs=first, full_html=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _stopped_list(stopped: list[Stopped]) -> str:
    if not stopped:
        return ""
    items = "".join(f"<li>trial {s.trial}: {html.escape(s.state)}: {html.escape(s.reason)}</li>" for s in stopped)
    return f"<details><summary>{len(stopped)} trial(s) without a trained result</summary><ul>{items}</ul></details>"


def _resolve_axes(view: StudyView, x: str | None, y: str | None) -> tuple[Objective, Objective]:
    """Default: the study's first minimised objective across, its first maximised one up."""
    objectives = view.objectives
    x_obj = OBJECTIVES.get(x) if x else next((o for o in objectives if o.direction == "minimize"),
                                            OBJECTIVES.get("latency_p95"))
    y_obj = OBJECTIVES.get(y) if y else next((o for o in objectives if o.direction == "maximize"),
                                            OBJECTIVES.get("auc"))
    if x_obj.name == y_obj.name:
        raise ConfigError(f"--x and --y are both {x_obj.name!r}; choose two of: {', '.join(OBJECTIVES.names())}")
    return x_obj, y_obj


def write_report(results_dir: Path, *, x: str | None = None, y: str | None = None) -> Path:
    """Write results/<study>/report.html from what the study folder holds, with `y` plotted against `x`."""
    view = load_view(Path(results_dir))
    x_obj, y_obj = _resolve_axes(view, x, y)
    doc = view.doc
    sections = []
    if not view.points:
        sections.append("<p>No trial has completed in this study yet, so there is no front to show.</p>")
    else:
        members = {m["trial"] for m in doc["members"]}
        sections += [_plot(build_figure(view, x_obj, y_obj), "pareto-plot", first=True),
                     '<p class="note">Faded: trained trials off the front. Stars: baselines. Crosses on the axis: '
                     'measured but never trained (over a budget, or failed). Open markers: estimated latency. Hover '
                     'a point for its spec, metrics and latency provenance.</p>']
        if len(view.objectives) > 2:
            sections.append(_plot(build_pairs(view), "pairs-plot", first=False))
        sections += [f"<h2>Pareto front ({len(members)} member(s))</h2>",
                     '<p class="note">Chosen on validation metrics; test metrics were computed once, for the '
                     'front and baselines. Click a column to sort. Ship one with <code>nas pick</code> and '
                     '<code>nas export</code>.</p>',
                     _table(doc["members"], view.folder, "front-table", primary=doc.get("primary_metric"))]
        compressed = [p.result for p in view.points if p.result.trial in members
                      and (p.result.spec.compression != CompressionSpec() or p.result.flags)]
        if compressed:
            sections += ["<h2>Compression effects on the front</h2>",
                         '<p class="note">Validation AUC of the float model after pruning and fine-tuning, against '
                         'the deployed artifact (quantized where the spec says so); latency at fp32 against the '
                         'deployed precision, measured in the same trial. Pruning gains show in the front itself '
                         '(params, MACs, p50).</p>', _compression_table(compressed)]
        off_front = [b for b in doc.get("baselines", []) if b["trial"] not in members]
        if off_front:
            sections += ["<h2>Baselines off the front</h2>",
                         _table(off_front, view.folder, "baseline-table", row_class="baseline",
                                primary=doc.get("primary_metric"))]
        hv = build_hypervolume(view)
        if hv is not None:
            sections += ["<h2>Convergence</h2>", _plot(hv, "hypervolume-plot", first=False),
                         '<p class="note">Each objective scaled to the range the trials reached (0 best, 1 worst), '
                         'reference point 10% beyond the worst, latencies as measured during the search. A curve '
                         'that has stopped rising means new trials no longer improve the trade-off.</p>']
        else:
            sections += ["<h2>Convergence</h2>", '<p class="note">No convergence curve: no searched trial meets the '
                         "study's constraints (latency budget, sensitivity floor).</p>"]
    sections.append(_stopped_list(view.stopped))
    page = _page(view, "\n".join(sections))
    return atomic_write_text(view.folder / "report.html", page)


def _page(view: StudyView, body: str) -> str:
    doc = view.doc
    counts = ", ".join(f"{v} {k.lower()}" for k, v in (doc.get("trials") or {}).items())
    device = doc["members"][0]["latency"]["device"] if doc["members"] else "n/a"
    status = []
    if not view.final:
        status.append('<p class="warn">No pareto.json yet (the search is running or was stopped): this front uses '
                      'the latencies measured during the search, is not re-measured and has no test metrics.</p>')
    elif doc.get("remeasured"):
        r = doc["remeasured"]
        dropped = f"; dropped: trial(s) {', '.join(map(str, r['dropped']))}" if r["dropped"] else ""
        status.append(f'<p class="meta">Front re-measured in one session at the end: {r["members_after"]} of '
                      f'{r["members_before"]} member(s) kept{dropped}. pareto.json written '
                      f'{html.escape(str(doc.get("written_at", "")))}.</p>')
    if view.estimated_front:
        status.append('<p class="warn">Some front latencies are estimates, not measurements on the target.</p>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nas report: {html.escape(doc['study'])}</title>
<style>{STYLE}</style></head><body>
<h1>nas study <code>{html.escape(doc['study'])}</code></h1>
<p class="meta">task {html.escape(doc['task'])} &middot; hardware profile {html.escape(doc['hardware'])}
({html.escape(device)}) &middot; trials: {html.escape(counts)} &middot; data
{html.escape(str((doc.get('data') or {}).get('path', 'n/a')))} &middot; objectives
{html.escape(', '.join(f"{o['name']} ({o['direction']})" for o in doc['objectives']))}
&middot; validation metrics guide the search; test metrics are computed once for the front and baselines
&middot; operating threshold: target sensitivity {doc['target_sensitivity']} on validation</p>
{''.join(status)}
{body}
<script>{SORT_JS}</script>
</body></html>
"""
