"""`nas report` on a real tiny study, and on copies of it changed to show what a real study can hold."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from _report_study import tiny_study
from conftest import run_nas
from nas.cli.main import main
from nas.report.html import FRONT_TRACE, build_figure, load_view, write_report
from nas.search.objectives import OBJECTIVES
from nas.search.pareto import non_dominated

pytestmark = pytest.mark.slow


@pytest.fixture
def study(tmp_path_factory, tmp_path):
    """A copy of the tiny study's results/ that a test may change; returns the study folder results/b."""
    shutil.copytree(tiny_study(tmp_path_factory) / "results", tmp_path / "results")
    return tmp_path / "results" / "b"


def front_table(page: str) -> str:
    table = page[page.index('id="front-table"'):]
    return table[:table.index("</table>")]


def front_rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", front_table(page))]


def test_report_verb_writes_the_chosen_axes(study):
    doc = json.loads((study / "pareto.json").read_text())
    (study / "report.html").unlink()
    proc = run_nas("report", "--study", "b", "--x", "params", "--y", "sensitivity", cwd=study.parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "report: results/b/report.html"
    page = (study / "report.html").read_text()
    assert "b: sensitivity vs params" in page and "<script src=" not in page
    assert sorted(front_rows(page)) == sorted(m["trial"] for m in doc["members"])
    links = re.findall(r'href="([^"]+)"', front_table(page))
    assert len(links) >= 4 * len(doc["members"])  # spec, result, test metrics, re-measured latency at least
    for href in links:  # relative, so the page works wherever the folder goes, and pointing at files that exist
        assert href.startswith("trials/") and (study / href).is_file(), href


def test_report_errors_name_the_valid_choices(study, capsys):
    results = str(study.parent)
    assert main(["report", "--results", results, "--study", "c"]) == 2
    assert f"no study 'c' under {results}/; studies there: b" in capsys.readouterr().err
    assert main(["report", "--results", results, "--study", "b", "--x", "latency"]) == 2
    assert "unknown objective 'latency'" in capsys.readouterr().err
    assert main(["report", "--results", results, "--study", "b", "--x", "auc", "--y", "auc"]) == 2
    assert "--x and --y are both 'auc'" in capsys.readouterr().err


def test_default_view_marks_front_baselines_knee_and_hover(study):
    doc = json.loads((study / "pareto.json").read_text())
    view = load_view(study)
    fig = build_figure(view, OBJECTIVES.get("latency_p95"), OBJECTIVES.get("auc"))
    traces = {t.name: t for t in fig.data}
    front = traces[FRONT_TRACE]
    assert sorted(front.customdata) == sorted(m["trial"] for m in doc["members"])
    by_trial = {m["trial"]: m for m in doc["members"]}
    for trial, x, hover in zip(front.customdata, front.x, front.hovertext):
        member = by_trial[trial]
        assert x == member["latency"]["p95_ms"]  # the re-measured number, not the search-time one
        assert member["summary"] in hover and f"test: AUC {member['metrics']['test']['auc']:.4f}" in hover
        assert "onnxruntime" in hover and "p99" in hover and "re-measured" in hover
        threshold = member["metrics"]["val"]["threshold"]
        assert f"@ threshold {threshold:.4f} (uncalibrated score" in hover  # the same 4 decimals as nas pick
    assert list(traces["baselines"].text) == [b["baseline"] for b in doc["baselines"]]
    assert any(a.text == f"knee: trial {doc['knee_trial']}" for a in fig.layout.annotations)
    faded = traces["other trials (dominated or over a limit)"]
    assert len(faded.x) + len(front.x) + sum(b["trial"] not in by_trial for b in doc["baselines"]) == 3
    # A share never runs below 0 (a nodule study whose CPMs were all 0 drew -1..1), and the long description sits
    # beneath the name rather than clipping it.
    assert fig.layout.yaxis.rangemode == "nonnegative" and fig.layout.xaxis.rangemode is None
    assert fig.layout.yaxis.title.text.startswith("auc (higher is better)<br><sup>")


def test_limits_estimates_untrained_trials_and_more_objectives(study):
    doc = json.loads((study / "pareto.json").read_text())
    doc["constraints"] = {"max_latency_ms": 0.1, "min_sensitivity": 0.9}
    doc["objectives"].append({"name": "params", "direction": "minimize"})
    estimated = doc["members"][-1]
    estimated["latency"]["method"] = "estimated"
    (study / "pareto.json").write_text(json.dumps(doc))
    over = study / "trials" / "3"
    over.mkdir()
    measurement = json.loads((study / "trials" / "0" / "measurement.json").read_text())
    (over / "measurement.json").write_text(json.dumps({**measurement, "p95_ms": 0.4}))
    (over / "infeasible.json").write_text(json.dumps({"kind": "infeasible", "reason": "p95 over the budget"}))

    fig = build_figure(load_view(study), OBJECTIVES.get("latency_p95"), OBJECTIVES.get("sensitivity"))
    traces = {t.name: t for t in fig.data}
    symbols = dict(zip(traces[FRONT_TRACE].customdata, traces[FRONT_TRACE].marker.symbol))
    assert symbols[estimated["trial"]] == "circle-open"
    assert all(s == "circle" for t, s in symbols.items() if t != estimated["trial"])
    assert "estimates, not measurements" in fig.layout.title.text
    assert list(traces["measured, not fully trained (no final AUC)"].x) == [0.4]
    lines = {(s.x0, s.y0) for s in fig.layout.shapes}
    assert (0.1, 0) in lines and (0, 0.9) in lines  # the budget across, the sensitivity floor up
    assert {"latency budget 0.1 ms", "min sensitivity 0.9"} <= {a.text for a in fig.layout.annotations}

    page = write_report(study, x="latency_p95", y="sensitivity").read_text()
    assert 'id="pairs-plot"' in page and "trial 3: infeasible: p95 over the budget" in page

    # Whether a trial meets 0.1 ms and 0.9 depends on the machine, so the curve is checked at limits all or none meet.
    for limits, curve in (({"max_latency_ms": 1e6, "min_sensitivity": 0.0}, True),
                          ({"max_latency_ms": 1e-6, "min_sensitivity": 0.0}, False)):
        (study / "pareto.json").write_text(json.dumps({**doc, "constraints": limits}))
        page = write_report(study).read_text()
        assert ('id="hypervolume-plot"' in page) is curve
        assert ("no searched trial meets the study's constraints" in page) is not curve


def test_running_study_without_pareto_json(study):
    (study / "pareto.json").unlink()
    page = write_report(study).read_text()
    assert "No pareto.json yet" in page and "provisional front" in page
    results = [json.loads(p.read_text()) for p in sorted((study / "trials").glob("*/result.json"))]
    values = [[r["metrics"]["val"]["auc"], r["measurement"]["p95_ms"]] for r in results]
    front = {r["trial"] for r, on in zip(results, non_dominated(values, ["maximize", "minimize"])) if on}
    assert set(front_rows(page)) == front


def test_no_finished_trial_gives_a_page_that_says_so(study):
    (study / "pareto.json").unlink()
    for path in study.glob("trials/*/result.json"):
        path.unlink()
    page = write_report(study).read_text()
    assert "No trial has completed in this study yet" in page and 'id="pareto-plot"' not in page
    assert page.count("no result yet (running, or its process was killed)") == 3
