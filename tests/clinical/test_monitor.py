"""`nas monitor` on shadow logs: figures equal scikit-learn's, drift fires on a shifted population and not on an
unshifted one, an empty log reads as such, and the page renders in headless Chromium without JavaScript errors."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, recall_score

from _browser import CHROMIUM, DevTools
from clinical.conftest import write_v1_log
from conftest import run_nas
from nas.clinical.calibration import calibrated_scores
from nas.clinical.evaluate import load_cases, logits
from nas.clinical.monitor import PSI_LIMIT, monitor_log, summary, write_page
from nas.clinical.predict import DeployedModel
from nas.clinical.shadow import append_predictions
from nas.data import BUNDLED_PNEUMONIAMNIST

pytestmark = pytest.mark.slow  # the exported model comes from a real (tiny) search


@pytest.fixture(scope="module")
def fixed_log(exported_model, tmp_path_factory) -> tuple[Path, list[dict], list[int | None]]:
    """230 predictions with known labels (a fifth unlabelled), decisions, referrals and latencies."""
    rng = np.random.default_rng(7)
    n = 230
    truth = rng.random(n) < 0.6
    decisions = np.where(rng.random(n) < 0.2, ~truth, truth).astype(int)
    labels = [int(t) if rng.random() > 0.2 else None for t in truth]
    rows = [{"input": f"ward/{i}.png", "score": float(rng.random()), "decision": int(d),
             "refer": bool(rng.random() < 0.1), "ms": float(rng.lognormal(1.0, 0.4))} for i, d in enumerate(decisions)]
    log = tmp_path_factory.mktemp("monitor") / "ward.db"
    reads = {f"ward/{i}.png": label for i, label in enumerate(labels) if label is not None}
    for start in range(0, n, 64):  # several predict runs appending to one log
        append_predictions(log, rows[start:start + 64], {k: v for k, v in reads.items()
                                                         if int(k[5:-4]) in range(start, start + 64)},
                           model_dir=exported_model)
    return log, rows, labels


def _expected(rows: list[dict], labels: list[int | None]) -> dict:
    known = [(label, r["decision"]) for r, label in zip(rows, labels) if label is not None]
    y, d = [k[0] for k in known], [k[1] for k in known]
    ms = [r["ms"] for r in rows]
    return {"predictions": len(rows), "labelled": len(known), "kappa": cohen_kappa_score(y, d),
            "sensitivity": recall_score(y, d, pos_label=1), "specificity": recall_score(y, d, pos_label=0),
            "referral_rate": float(np.mean([r["refer"] for r in rows])),
            **dict(zip(("p50_ms", "p95_ms", "p99_ms"), np.percentile(ms, (50, 95, 99))))}


def test_figures_equal_scikit_learn_overall_and_per_window(fixed_log):
    log, rows, labels = fixed_log
    doc = monitor_log(log, window=50)
    for got, (start, stop) in [(doc["overall"], (0, 230)), *zip(doc["windows"], [(i, i + 50) for i in range(0, 230, 50)])]:
        for key, value in _expected(rows[start:stop], labels[start:stop]).items():
            assert got[key] == pytest.approx(value, abs=1e-12), (start, key)
        assert (got["first_id"], got["last_id"]) == (start + 1, min(stop, 230))
    assert len(doc["windows"]) == 5 and doc["windows"][-1]["predictions"] == 30


def _with_histogram(exported_model: Path, edges: np.ndarray, counts: np.ndarray, folder: Path) -> Path:
    """A copy of the export whose io.json records this validation histogram."""
    shutil.copytree(exported_model, folder)
    io = json.loads((folder / "io.json").read_text())
    io["val_scores_histogram"] = {"edges": list(map(float, edges)), "counts": list(map(int, counts))}
    (folder / "io.json").write_text(json.dumps(io))
    return folder


@pytest.fixture(scope="module")
def validation(exported_model, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The exported model's calibrated validation scores, and a copy of the export whose io.json histogram has
    its bins at those scores' deciles. (A one-epoch model's calibrated scores crowd into one of 20 equal-width
    bins, where no shift could be seen; decile bins are what the drift check is meant to be given.)"""
    deployed = DeployedModel.load(exported_model)
    cases = load_cases(BUNDLED_PNEUMONIAMNIST, "val", deployed)
    scores = calibrated_scores(logits(deployed, cases.images), deployed.temperature)
    edges = np.quantile(scores, np.linspace(0, 1, 11))
    edges[0], edges[-1] = 0.0, 1.0
    counts, edges = np.histogram(scores, bins=edges)
    folder = _with_histogram(exported_model, edges, counts, tmp_path_factory.mktemp("deciles") / "export")
    return folder, scores, cases.labels


def _shadow(folder: Path, scores: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    io = json.loads((folder / "io.json").read_text())
    rows = [{"input": f"case{i}.png", "score": float(s), "decision": int(s >= io["threshold"]),
             "refer": bool(io["referral_band"][0] <= s <= io["referral_band"][1]), "ms": 3.0}
            for i, s in enumerate(scores)]
    append_predictions(path, rows, {f"case{i}.png": int(y) for i, y in enumerate(labels)}, model_dir=folder)
    return path


def test_drift_warning_fires_on_a_shifted_population_only(validation, tmp_path):
    folder, scores, labels = validation
    order = np.random.default_rng(0).permutation(len(scores))[:200]  # the validation population, reshuffled
    same = monitor_log(_shadow(folder, scores[order], labels[order], tmp_path / "same.db"), window=200)["drift"]
    assert same["warning"] is False and same["psi"] <= PSI_LIMIT and same["status"].startswith("no drift")
    normal = labels == 0  # a ward with no pneumonia: the scores move down
    shifted = monitor_log(_shadow(folder, scores[normal], labels[normal], tmp_path / "shifted.db"), window=100)
    assert shifted["drift"]["warning"] is True and shifted["drift"]["psi"] > PSI_LIMIT
    assert shifted["drift"]["bins"] == 10 and shifted["drift"]["predictions"] == 100
    assert "PSI" in shifted["drift"]["rule"] and str(PSI_LIMIT) in shifted["drift"]["rule"]
    assert any(line.strip().startswith("DRIFT: PSI") for line in summary(shifted))
    assert shifted["windows"][0]["psi"] > PSI_LIMIT and shifted["windows"][1]["psi"] is None  # 35 cases: not judged


def test_too_few_predictions_or_a_coarse_histogram_are_not_judged(validation, exported_model, tmp_path):
    folder, scores, labels = validation
    few = monitor_log(_shadow(folder, scores[:40], labels[:40], tmp_path / "few.db"))["drift"]
    assert few["warning"] is False and few["status"] == "not judged: 40 prediction(s), fewer than 100"
    # Every validation score in one bin: a shift inside it is invisible, so the check says so instead of "no drift".
    coarse = _with_histogram(exported_model, np.array([0.0, 0.5, 1.0]), np.array([0, len(scores)]), tmp_path / "c")
    drift = monitor_log(_shadow(coarse, scores[labels == 0], labels[labels == 0], tmp_path / "coarse.db"))["drift"]
    assert drift["warning"] is False and drift["psi"] is None and drift["bins"] == 1
    assert drift["status"].startswith("not judged: validation's scores fill 1 bin(s)")


def test_empty_log_gives_a_report_that_says_so(exported_model, tmp_path):
    log = tmp_path / "empty.db"
    assert append_predictions(log, [], None, model_dir=exported_model) == 0
    doc = monitor_log(log)
    assert doc["overall"]["predictions"] == 0 and doc["windows"] == [] and doc["drift"]["warning"] is False
    assert summary(doc) == [f"{log}: no predictions logged yet (write some with `nas predict --log {log}`)"]
    page = write_page(doc, tmp_path / "empty.html").read_text()
    assert 'id="empty"' in page and "No predictions logged yet" in page
    shown = run_nas("monitor", str(log), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["overall"]["predictions"] == 0


def test_cli_prints_one_json_document_and_writes_the_page(fixed_log, tmp_path):
    log, rows, labels = fixed_log
    shown = run_nas("monitor", str(log), "--window", "50", "--out", str(tmp_path / "m.html"), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)  # exactly one document, nothing else on stdout
    assert doc["overall"]["kappa"] == pytest.approx(_expected(rows, labels)["kappa"])
    assert doc["page"] == str(tmp_path / "m.html") and (tmp_path / "m.html").stat().st_size > 1_000_000  # plotly.js in
    text = run_nas("monitor", str(log), "--window", "50", cwd=tmp_path)
    assert text.returncode == 0 and "kappa" in text.stdout and text.stdout.rstrip().endswith(f"page: {log.with_suffix('.html')}")
    bad = run_nas("monitor", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert bad.returncode == 2 and "shadow log not found" in bad.stderr


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed (apt-get install chromium; "
                                                  ".ci/run installs it)")
def test_page_renders_svg_plots_without_javascript_errors(fixed_log, tmp_path):
    log, _, _ = fixed_log
    page = write_page(monitor_log(log, window=50), tmp_path / "monitor.html")
    browser = DevTools(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(page.as_uri())
        deadline = time.monotonic() + 60
        while not browser.evaluate("document.querySelectorAll('#monitor-plot path.point').length > 0"):
            assert time.monotonic() < deadline, "the plot did not render within 60 s"
            time.sleep(0.2)
        assert browser.evaluate("document.querySelectorAll('#monitor-plot canvas').length") == 0  # SVG, not WebGL
        # 5 windows x (kappa, sensitivity, specificity, referral, p50, p95, p99); PSI is not judged on 50 cases
        assert browser.evaluate("document.querySelectorAll('#monitor-plot path.point').length") == 5 * 7
        browser.evaluate("new Promise((done) => setTimeout(done, 300))")  # let late errors arrive
        assert browser.errors() == []
    finally:
        browser.close()


def test_monitor_names_the_row_where_the_hash_chain_breaks_and_exits_4(exported_model, tmp_path):
    log = tmp_path / "ward.db"
    rows = [{"input": f"ward/{i}.png", "score": 0.1 * i, "decision": int(i >= 5), "refer": False, "ms": 2.0}
            for i in range(8)]
    append_predictions(log, rows, None, model_dir=exported_model)
    assert "  integrity: hash chain verified over 8 row(s); head " in "\n".join(summary(monitor_log(log)))
    with sqlite3.connect(log) as db:  # the triggers refuse UPDATE; someone with write access drops them first
        db.execute("DROP TRIGGER predictions_append_only_update")
        db.execute("UPDATE predictions SET decision = 0 WHERE id = 6")
    shown = run_nas("monitor", str(log), "--json", cwd=tmp_path)
    assert shown.returncode == 4
    doc = json.loads(shown.stdout)
    assert doc["integrity"]["status"] == "broken" and doc["integrity"]["broken_at"] == 6
    assert "warning: " in shown.stderr and "TAMPERED: the hash chain breaks at row 6 (ward/5.png)" in shown.stderr
    assert doc["overall"]["predictions"] == 8  # the figures are still there to compare, beside the warning
    page = (tmp_path / "ward.html").read_text()
    assert 'class="warn" id="integrity"' in page and "breaks at row 6" in page


def test_monitor_reads_a_log_written_before_the_chain_and_says_it_cannot_be_verified(tmp_path):
    log = write_v1_log(tmp_path / "old.db")
    shown = run_nas("monitor", str(log), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "1 predictions" in shown.stdout and "integrity: not verifiable" in shown.stdout
    assert "warning: " in shown.stderr and "written before rows were hash-chained" in shown.stderr
