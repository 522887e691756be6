"""`nas monitor`: a shadow-mode log read back as agreement with the radiologists, speed, and input drift over time.

Figures come from the log alone (nas.clinical.shadow keeps each model's io.json in it), overall and per window of
N consecutive predictions. Agreement (Cohen's kappa, sensitivity, specificity) counts the predictions that have a
radiologist's label, referred ones included (in shadow mode every case gets the model's decision); the referral
rate and latency count every prediction. The log's hash chain is recomputed on every read (nas.clinical.shadow):
the document's `integrity` says whether it holds, or at which row it breaks.

Drift: the population stability index, PSI = sum((p - q) * ln(p / q)), of the latest N calibrated scores (p)
against the validation scores the export recorded (q, io.json's val_scores_histogram). Validation's bins are first
merged, left to right, until each holds at least 10% of validation, so a window of 100 scores is judged on ten or
fewer bins: with no shift, 100 * PSI is roughly chi-squared with (bins - 1) degrees of freedom, under 0.2 in about
99 windows of 100. PSI above 0.2 is the usual "significant shift" line.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from nas._io import atomic_write_text
from nas.clinical.shadow import LoggedPrediction, ShadowLog, read_log
from nas.defaults import DEFAULT_WINDOW
from nas.errors import ConfigError

__all__ = ["DEFAULT_WINDOW", "DRIFT_RULE", "MIN_DRIFT_CASES", "PSI_LIMIT", "Figures", "build_figure", "drift",
           "monitor_log", "psi", "summary", "window_figures", "write_page"]

PSI_LIMIT = 0.2
MIN_DRIFT_CASES = 100
MIN_BIN_SHARE = 0.10
MIN_BINS = 3
"""Fewer merged bins than this (validation's scores all in one or two of io.json's bins) cannot show a shift."""
_FLOOR = 1e-4  # an empty bin counts as this share, so ln(p / q) stays finite
DRIFT_RULE = (f"drift warning when the population stability index, PSI = sum((p - q) ln(p / q)), of the latest "
              f"window's scores (p) against the validation scores in io.json (q) exceeds {PSI_LIMIT}; validation's "
              f"bins merged to hold >= {MIN_BIN_SHARE:.0%} of it each; judged from {MIN_DRIFT_CASES} predictions")


@dataclass(frozen=True)
class Figures:
    """What a run of predictions shows; None where it is undefined (no labels, one class only)."""

    predictions: int
    labelled: int
    first_id: int | None
    last_id: int | None
    first_utc: str | None
    last_utc: str | None
    kappa: float | None
    sensitivity: float | None
    specificity: float | None
    referral_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    psi: float | None = None
    """Against validation, for a window of at least MIN_DRIFT_CASES predictions of one model."""


def _kappa(labels: np.ndarray, decisions: np.ndarray) -> float | None:
    """Cohen's kappa of two binary raters: (observed - chance agreement) / (1 - chance agreement)."""
    observed = float((labels == decisions).mean())
    chance = float(labels.mean() * decisions.mean() + (1 - labels.mean()) * (1 - decisions.mean()))
    return (observed - chance) / (1 - chance) + 0.0 if chance < 1 else None  # + 0.0: no "-0.000" printed


def window_figures(rows: Sequence[LoggedPrediction]) -> Figures:
    """Agreement, referral and latency figures of `rows`."""
    labelled = [r for r in rows if r.label is not None]
    labels = np.array([r.label for r in labelled], int)
    decisions = np.array([r.decision for r in labelled], int)
    ms = np.array([r.ms for r in rows], float)
    positive = labels == 1

    def rate(hits: np.ndarray, among: np.ndarray) -> float | None:
        return float((hits & among).sum() / among.sum()) if among.any() else None

    p50, p95, p99 = (float(v) for v in np.percentile(ms, (50, 95, 99))) if rows else (None, None, None)
    return Figures(
        predictions=len(rows), labelled=len(labelled),
        first_id=rows[0].id if rows else None, last_id=rows[-1].id if rows else None,
        first_utc=rows[0].utc if rows else None, last_utc=rows[-1].utc if rows else None,
        kappa=_kappa(labels, decisions) if labelled else None,
        sensitivity=rate(decisions == 1, positive), specificity=rate(decisions == 0, ~positive),
        referral_rate=float(np.mean([r.refer for r in rows])) if rows else None,
        p50_ms=p50, p95_ms=p95, p99_ms=p99,
    )


def _merged_bins(edges: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent validation bins joined until each holds at least MIN_BIN_SHARE of validation's scores (rounded
    down, so decile bins stay ten)."""
    keep, least, running = [edges[0]], math.floor(MIN_BIN_SHARE * counts.sum()), 0.0
    merged: list[float] = []
    for right, count in zip(edges[1:], counts):
        running += count
        if running >= least:
            keep.append(right)
            merged.append(running)
            running = 0.0
    if running:  # a thin remainder joins the last bin
        if merged:
            keep[-1] = edges[-1]
            merged[-1] += running
        else:
            keep.append(edges[-1])
            merged.append(running)
    return np.array(keep, float), np.array(merged, float)


def psi(scores: np.ndarray, histogram: dict[str, Sequence[float]]) -> tuple[float, int]:
    """PSI of `scores` against a validation histogram {"edges", "counts"}, and the number of bins judged on."""
    edges, counts = _merged_bins(np.asarray(histogram["edges"], float), np.asarray(histogram["counts"], float))
    recent, _ = np.histogram(np.clip(scores, edges[0], edges[-1]), bins=edges)
    p = np.maximum(recent / max(1, recent.sum()), _FLOOR)
    q = np.maximum(counts / counts.sum(), _FLOOR)
    return float(((p - q) * np.log(p / q)).sum()), len(counts)


def _histogram(log: ShadowLog, sha: str) -> dict[str, Any] | None:
    return log.models.get(sha, {}).get("io", {}).get("val_scores_histogram")


def drift(log: ShadowLog, window: int) -> dict[str, Any]:
    """The latest `window` predictions of the model that made the last one, against that model's validation."""
    out: dict[str, Any] = {"rule": DRIFT_RULE, "limit": PSI_LIMIT, "psi": None, "warning": False}
    if not log.predictions:
        return {**out, "status": "no predictions"}
    sha = log.predictions[-1].model_sha256
    recent = [r for r in log.predictions if r.model_sha256 == sha][-window:]
    out.update(model_sha256=sha, predictions=len(recent), first_id=recent[0].id, last_id=recent[-1].id)
    histogram = _histogram(log, sha)
    if histogram is None:
        return {**out, "status": "not judged: the model's io.json has no val_scores_histogram (re-export it)"}
    if len(recent) < MIN_DRIFT_CASES:
        return {**out, "status": f"not judged: {len(recent)} prediction(s), fewer than {MIN_DRIFT_CASES}"}
    value, bins = psi(np.array([r.score for r in recent]), histogram)
    if bins < MIN_BINS:
        return {**out, "bins": bins, "status": f"not judged: validation's scores fill {bins} bin(s) of io.json's "
                                               "val_scores_histogram; a shift inside them cannot be seen (re-export "
                                               "with bins at validation's deciles)"}
    warning = value > PSI_LIMIT
    status = (f"DRIFT: PSI {value:.3f} > {PSI_LIMIT} over {bins} bins; the inputs no longer look like validation's "
              "(new scanner, protocol or population?): review before trusting the figures"
              if warning else f"no drift: PSI {value:.3f} <= {PSI_LIMIT} over {bins} bins")
    return {**out, "psi": value, "bins": bins, "warning": warning, "status": status}


def monitor_log(log_path: Path, window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """The monitoring document: overall figures, figures per window of `window` predictions, and drift."""
    if window < 1:
        raise ConfigError(f"--window must be at least 1, got {window}")
    log = read_log(log_path)
    rows = log.predictions
    windows = []
    for start in range(0, len(rows), window):
        chunk = rows[start:start + window]
        figures = window_figures(chunk)
        histogram = _histogram(log, chunk[-1].model_sha256)
        if histogram is not None and len(chunk) >= MIN_DRIFT_CASES and len({r.model_sha256 for r in chunk}) == 1:
            value, bins = psi(np.array([r.score for r in chunk]), histogram)
            figures = Figures(**{**asdict(figures), "psi": value if bins >= MIN_BINS else None})
        windows.append(figures)
    return {
        "schema_version": 1, "log": str(log_path), "window": window,
        "models": [{"sha256": sha, **{k: v for k, v in m.items() if k != "io"},
                    "threshold": m["io"].get("threshold"), "referral_band": m["io"].get("referral_band")}
                   for sha, m in log.models.items()],
        "overall": asdict(window_figures(rows)), "windows": [asdict(w) for w in windows],
        "drift": drift(log, window), "integrity": asdict(log.integrity),
        "notes": ["kappa, sensitivity and specificity: the model's decision against the radiologist's label, over "
                  "labelled predictions (referred ones included); referral rate and latency: every prediction"],
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary(doc: dict[str, Any]) -> list[str]:
    """The monitoring document as lines of text for the terminal."""
    o = doc["overall"]
    if not o["predictions"]:
        return [f"{doc['log']}: no predictions logged yet (write some with `nas predict --log {doc['log']}`)"]
    lines = [f"{doc['log']}: {o['predictions']} predictions ({o['labelled']} with a radiologist's label), "
             f"{o['first_utc']} to {o['last_utc']} UTC, {len(doc['models'])} model(s)",
             f"  integrity: {doc['integrity']['message']}",
             f"  overall: kappa {_fmt(o['kappa'])}, sensitivity {_fmt(o['sensitivity'])}, specificity "
             f"{_fmt(o['specificity'])}, referral rate {_fmt(o['referral_rate'])}, latency p50/p95/p99 "
             f"{_fmt(o['p50_ms'], 2)}/{_fmt(o['p95_ms'], 2)}/{_fmt(o['p99_ms'], 2)} ms",
             f"  per window of {doc['window']}:",
             f"  {'ids':>13} {'n':>5} {'labelled':>8} {'kappa':>6} {'sens':>6} {'spec':>6} {'refer':>6} "
             f"{'p95 ms':>7} {'PSI':>6}"]
    for w in doc["windows"]:
        lines.append(f"  {w['first_id']:>6}-{w['last_id']:<6} {w['predictions']:>5} {w['labelled']:>8} "
                     f"{_fmt(w['kappa']):>6} {_fmt(w['sensitivity']):>6} {_fmt(w['specificity']):>6} "
                     f"{_fmt(w['referral_rate']):>6} {_fmt(w['p95_ms'], 2):>7} {_fmt(w['psi']):>6}")
    return [*lines, f"  {doc['drift']['status']}", f"  rule: {doc['drift']['rule']}", *(f"  {n}" for n in doc["notes"])]


def build_figure(doc: dict[str, Any]) -> go.Figure:
    """Agreement, referral, latency and PSI per window, against the time of each window's last prediction."""
    windows = doc["windows"]
    x = [w["last_utc"] for w in windows]
    hover = [f"predictions {w['first_id']}-{w['last_id']} ({w['predictions']}, {w['labelled']} labelled)"
             for w in windows]
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("Agreement with the radiologists", "Referral rate",
                                        "Latency per image (ms)", "Score drift against validation (PSI)"))
    panels = ((1, ("kappa", "sensitivity", "specificity")), (2, ("referral_rate",)),
              (3, ("p50_ms", "p95_ms", "p99_ms")), (4, ("psi",)))
    for row, keys in panels:
        for key in keys:
            fig.add_trace(go.Scatter(x=x, y=[w[key] for w in windows], mode="lines+markers", name=key,
                                     text=hover, hovertemplate="%{text}<br>" + key + " %{y:.3f}<extra></extra>"),
                          row=row, col=1)
    fig.add_hline(y=PSI_LIMIT, line_dash="dash", line_color="#b30000", row=4, col=1,
                  annotation_text=f"warning above {PSI_LIMIT}")
    fig.update_yaxes(range=[-0.05, 1.05], row=1, col=1)
    fig.update_layout(height=1000, template="plotly_white", hovermode="closest",
                      margin={"l": 60, "r": 20, "t": 40, "b": 40})
    return fig


STYLE = """body { font-family: system-ui, sans-serif; margin: 1.5rem 2rem; color: #222; }
table { border-collapse: collapse; } th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; } .meta, .note { color: #555; }
.warn { color: #b30000; font-weight: bold; } .ok { color: #1a7f37; }"""


def write_page(doc: dict[str, Any], out: Path) -> Path:
    """A self-contained page (plotly.js inlined, SVG plots: opens offline, in any browser)."""
    o, d = doc["overall"], doc["drift"]
    if not o["predictions"]:
        body = "<p id=\"empty\">No predictions logged yet: the log exists but holds no rows.</p>"
    else:
        cells = (("predictions", o["predictions"]), ("labelled", o["labelled"]), ("kappa", _fmt(o["kappa"])),
                 ("sensitivity", _fmt(o["sensitivity"])), ("specificity", _fmt(o["specificity"])),
                 ("referral rate", _fmt(o["referral_rate"])),
                 ("latency p50 / p95 / p99 ms", f"{_fmt(o['p50_ms'], 2)} / {_fmt(o['p95_ms'], 2)} / "
                                                f"{_fmt(o['p99_ms'], 2)}"))
        table = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in cells)
        models = "".join(f"<li><code>{html.escape(m['sha256'])}</code> {html.escape(m['export_dir'])}/"
                         f"{html.escape(m['file'])}, first seen {html.escape(m['first_seen_utc'])} UTC</li>"
                         for m in doc["models"])
        plot = pio.to_html(build_figure(doc), include_plotlyjs=True, full_html=False, div_id="monitor-plot",
                           config={"displaylogo": False, "responsive": True})
        body = (f"<p class=\"meta\">{o['predictions']} predictions from {html.escape(o['first_utc'])} to "
                f"{html.escape(o['last_utc'])} UTC; windows of {doc['window']} predictions.</p>"
                f"<h2>Overall</h2><table id=\"overall-table\">{table}</table><h2>Models</h2><ul>{models}</ul>"
                f"<h2>Over time</h2>{plot}")
    kind = "warn" if d["warning"] else "ok" if d["psi"] is not None else "note"
    status = f"<p class=\"{kind}\" id=\"drift\">{html.escape(d['status'])}</p>"
    chain = doc["integrity"]
    kind = {"broken": "warn", "verified": "ok"}.get(chain["status"], "note")
    status = f"<p class=\"{kind}\" id=\"integrity\">{html.escape(chain['message'])}</p>\n{status}"
    notes = "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in [f"Rule: {d['rule']}.", *doc["notes"]])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nas monitor: {html.escape(Path(doc['log']).name)}</title>
<style>{STYLE}</style></head><body>
<h1>Shadow mode: <code>{html.escape(doc['log'])}</code></h1>
{status}
{body}
{notes}
</body></html>
"""
    return atomic_write_text(Path(out), page)
