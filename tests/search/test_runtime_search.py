"""A search on a profile with both CPU runtimes, run while this test keeps both cores busy, with a budget no
candidate meets: it still writes a non-empty, labelled front, says why nothing is feasible, and records every
runtime's timing and the choice (settled points 19 and 20)."""

from __future__ import annotations

import json
import multiprocessing
import time

import jsonschema
import pytest
import yaml

from conftest import SMALL_XRAY, run_nas, schema

pytestmark = pytest.mark.slow
BUSY_S = 90.0
"""The load covers phase 1 (where budgets are decided) and is bounded so that training is not starved in CI."""


def _spin(until: float) -> None:
    x = 0
    while time.time() < until:
        x += 1


def test_busy_search_with_no_feasible_trial(tmp_path):
    profile = tmp_path / "both.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "both-quick", "description": "both CPU runtimes, quick", "backend": "onnxruntime",
        "runtimes": ["onnxruntime", "openvino"], "precisions": ["fp32", "int8"], "throughput_batch": 2,
        "protocol": {"warmup_runs": 2, "warmup_s": 0, "min_runs": 20, "min_seconds": 0.05, "max_seconds": 2.0,
                     "throughput_min_runs": 3, "throughput_min_seconds": 0.01, "quiet_wait_s": 1.0}}))
    until = time.time() + BUSY_S
    busy = [multiprocessing.Process(target=_spin, args=(until,)) for _ in range(2)]
    for p in busy:
        p.start()
    try:
        proc = run_nas("search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(profile),
                       "--epochs", "1", "--trials", "2", "--max-latency-ms", "0.001", "--study", "busy", "--json",
                       cwd=tmp_path)
    finally:
        for p in busy:
            p.terminate()
            p.join()
    assert proc.returncode == 0, proc.stderr
    assert "no trial of" in proc.stderr and "max_latency_ms" in proc.stderr
    doc = json.loads((tmp_path / "results" / "busy" / "pareto.json").read_text())
    jsonschema.validate(doc, schema("pareto.v1.schema.json"))
    why = doc["no_feasible_trial"]
    assert why["front"] == "unconstrained" and why["constraints"]["max_latency_ms"]["misses_by"] > 0
    assert doc["members"], "the unconstrained front is kept"
    for member in doc["members"]:
        assert member["latency"]["disturbance"] is not None, "every local timing says how disturbed it was"
        choice = member["runtime_choice"]
        assert {t["runtime"] for t in choice["timings"]} == {"onnxruntime", "openvino"}
        assert all((t["measurement"] is None) != (t["skipped"] is None) for t in choice["timings"])
        assert member["latency"]["backend"] == choice["runtime"]
