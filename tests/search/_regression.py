"""The regression comparison of issue 16: the same seeds give the same trials and the same pareto.json fields as
the code before the task plug-in refactor (fixtures in tests/fixtures/regression/, captured on that code)."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest
from conftest import FIXTURES

METRIC_TOLERANCE = 0.02
"""Training is seeded; thread counts may still reorder float sums, so metrics agree to this, not bit for bit."""


def _stored(spec: dict[str, Any] | None, current: dict[str, Any] | None) -> dict[str, Any] | None:
    """`current` restricted to the keys the stored spec has (fields added since, e.g. spatial_dims, are new)."""
    if spec is None or current is None:
        return current
    return {k: _stored(v, current.get(k)) if isinstance(v, dict) and k != "channels" else current.get(k)
            for k, v in spec.items()}


def assert_same_as_before(name: str, trials: list[optuna.trial.FrozenTrial], doc: dict[str, Any]) -> None:
    before = json.loads((FIXTURES / "regression" / f"{name}.json").read_text())
    assert [t.number for t in trials] == [t["number"] for t in before["trials"]]
    for trial, old in zip(trials, before["trials"]):
        result = trial.user_attrs.get("result") or {}
        assert trial.state.name == old["state"] and trial.params == old["params"]
        assert _stored(old["spec"], result.get("spec")) == old["spec"]
        assert _stored(old["pipeline"], result.get("pipeline")) == old["pipeline"]
        assert (result.get("params"), result.get("macs")) == (old["params_count"], old["macs"])
        val = (result.get("metrics") or {}).get("val")
        if old["val"] is None:
            assert val is None
            continue
        assert set(val) == set(old["val"])
        for key, value in old["val"].items():
            if isinstance(value, float):
                assert val[key] == pytest.approx(value, abs=METRIC_TOLERANCE), key
    shape = before["pareto"]
    member = (doc["members"] or doc["baselines"])[0]
    # Every field the old code wrote is still written; fields added since by other features (the runtime choice,
    # a timing's disturbance, the no-feasible-trial explanation, a nodule member's patch-level test figures) are
    # additions, not changes.
    assert set(shape["keys"]) <= set(doc) and set(shape["member_keys"]) <= set(member)
    assert all(set(shape["metric_keys"][split]) <= set(member["metrics"][split]) for split in ("val", "test"))
    assert set(shape["latency_keys"]) <= set(member["latency"])
    assert sorted(doc["constraints"]) == shape["constraints_keys"]
