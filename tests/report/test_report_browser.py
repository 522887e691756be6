"""The report a real search wrote, opened in headless Chromium: the plot renders, the table sorts, no JS errors.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so the test needs no port, no
extra package and no network; the page is self-contained (plotly.js embedded).
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from _browser import CHROMIUM, DevTools
from _report_study import tiny_study

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed (apt-get install chromium; "
                                                     ".ci/run installs it)"),
]


# The points of the trace named `name` inside the plot `div`: plotly binds each trace's data to its SVG group.
POINTS = """(([div, name]) => {{
  const groups = [...document.querySelectorAll(`#${{div}} g.trace.scatter`)]
    .filter((g) => g.__data__ && g.__data__[0] && g.__data__[0].trace.name === name);
  return groups.reduce((n, g) => n + g.querySelectorAll("path.point").length, 0);
}})({args})"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    study = tiny_study(tmp_path_factory) / "results" / "b"
    folder = tmp_path_factory.mktemp("browser")
    browser = DevTools(folder / "profile", folder / "chromium.log")
    try:
        browser.open((study / "report.html").as_uri())
        deadline = time.monotonic() + 60
        while not browser.evaluate("document.querySelectorAll('#pareto-plot path.point').length > 0"):
            assert time.monotonic() < deadline, "the plot did not render within 60 s"
            time.sleep(0.2)
        yield browser, study, folder
    finally:
        browser.close()


def test_plot_renders_every_front_member_as_an_svg_point(page):
    browser, study, _ = page
    doc = json.loads((study / "pareto.json").read_text())
    assert browser.evaluate("document.querySelectorAll('#pareto-plot canvas').length") == 0  # SVG, not WebGL
    front = browser.evaluate(POINTS.format(args=json.dumps(["pareto-plot", "Pareto front"])))
    assert front == len(doc["members"]) >= 1
    trained = len(list((study / "trials").glob("*/result.json")))
    points = "document.querySelectorAll('#pareto-plot .scatterlayer path.point').length"
    deadline = time.monotonic() + 10  # plotly draws trace after trace: on a loaded machine the stars come later
    while (drawn := browser.evaluate(points)) < trained + len(doc["baselines"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert drawn == trained + len(doc["baselines"])  # every trained trial once, and each baseline's star on top
    assert browser.evaluate("document.querySelectorAll('#hypervolume-plot path.point').length") >= 1


def test_front_table_has_one_row_per_member_and_sorts(page):
    browser, study, _ = page
    doc = json.loads((study / "pareto.json").read_text())
    rows = "[...document.querySelectorAll('#front-table tbody tr')]"
    headers = "document.querySelectorAll('#front-table th')"
    trials = browser.evaluate(f"{rows}.map((r) => r.cells[0].textContent)")
    assert sorted(map(int, trials)) == sorted(m["trial"] for m in doc["members"])
    column = browser.evaluate(f"[...{headers}].findIndex((h) => h.textContent === 'p95 ms')")
    p95 = f"{rows}.map((r) => Number(r.cells[{column}].textContent))"
    browser.evaluate(f"{headers}[{column}].click()")
    assert browser.evaluate(p95) == sorted(browser.evaluate(p95))
    assert browser.evaluate(f"{headers}[{column}].dataset.dir") == "asc"
    browser.evaluate(f"{headers}[{column}].click()")
    assert browser.evaluate(p95) == sorted(browser.evaluate(p95), reverse=True)
    assert browser.evaluate(f"{headers}[{column}].dataset.dir") == "desc"
    links = browser.evaluate("[...document.querySelectorAll('#front-table a')].map((a) => a.getAttribute('href'))")
    assert links and all((study / href).exists() for href in links)  # relative to report.html, and present


def test_page_logged_no_javascript_errors(page):
    browser, _, _ = page
    browser.evaluate("new Promise((done) => setTimeout(done, 300))")  # let late errors arrive
    assert browser.errors() == []


def test_screenshot_is_saved(page):
    browser, _, folder = page
    size = browser.send("Page.getLayoutMetrics")["cssContentSize"]
    shot = browser.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1},
    })
    path = folder / "report.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 50_000
    print(f"screenshot: {path}")
