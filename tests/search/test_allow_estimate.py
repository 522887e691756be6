"""A search on a Jetson profile with no Jetson in reach: refused, or with `--allow-estimate` priced and labelled."""

import json

import pytest

from conftest import REPO, SMALL_XRAY, run_nas

SEARCH = ["search", "--space", str(REPO / "tests/fixtures/xray-one-arch.yaml"), "--data", str(SMALL_XRAY),
          "--hardware", "jetson-orin-nano", "--epochs", "1", "--no-baselines", "--no-progress", "--study", "est",
          "--trials", "1"]


@pytest.mark.slow
def test_estimated_latencies_are_labelled_everywhere(tmp_path):
    refused = run_nas(*SEARCH, cwd=tmp_path)
    assert refused.returncode == 2 and "--allow-estimate" in refused.stderr
    proc = run_nas(*SEARCH, "--allow-estimate", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ESTIMATES, not measurements" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["hardware"] == "jetson-orin-nano" and doc["members"]
    for member in doc["members"]:
        latency = member["latency"]
        assert latency["method"] == "estimated" and latency["backend"] == "estimate"
        assert latency["device"].endswith("(estimated)") and latency["p50_ms"] > 0
        assert "nas estimate (fit on" in latency["runtime_version"]
    settings = json.loads((tmp_path / "results" / "est" / "settings.json").read_text())
    assert settings["latency_method"] == "estimated"
