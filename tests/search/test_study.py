"""Study creation and strict resume (settled point 12), storages, and the budget count."""

from __future__ import annotations

import pytest

from conftest import QUICK_PROFILE, SMALL_XRAY
from nas.errors import ConfigError, StudyError
from nas.search.runner import SearchConfig, prepare
from nas.search.study import open_storage


def config(tmp_path, **overrides) -> SearchConfig:
    base = dict(space="xray-tiny", data=str(SMALL_XRAY), hardware=str(QUICK_PROFILE), study="s",
                results=tmp_path / "results", trials=2, epochs=1, progress=False)
    return SearchConfig(**{**base, **overrides})


def test_new_study_stores_settings_and_enqueues_baselines(tmp_path):
    run = prepare(config(tmp_path))
    assert run.created
    stored = run.study.user_attrs["nas_settings"]
    assert stored["task"] == "xray" and stored["objectives"] == ["auc", "latency_p95"]
    assert stored["data_fingerprint"] == run.context.dataset.fingerprint
    waiting = [t for t in run.study.trials if t.state.name == "WAITING"]
    assert [t.user_attrs["baseline"] for t in waiting] == ["dsconv_reference"]
    assert (tmp_path / "results" / "s" / "study.db").exists()
    assert (tmp_path / "results" / "s" / "environment.json").exists()


def test_same_settings_resume(tmp_path):
    prepare(config(tmp_path))
    again = prepare(config(tmp_path, trials=5, seed=3))  # budget and seed may change
    assert not again.created
    assert len([t for t in again.study.trials if t.state.name == "WAITING"]) == 1  # baselines not enqueued twice


@pytest.mark.parametrize("change,named", [
    ({"objectives": ("auc", "latency_p50")}, "objectives"),
    ({"max_latency_ms": 1.0}, "max_latency_ms"),
    ({"space": "xray"}, "search space"),
    ({"hardware": "cpu"}, "hardware profile"),
    ({"target_sensitivity": 0.9}, "target_sensitivity"),
])
def test_resume_with_other_settings_is_refused(tmp_path, change, named):
    prepare(config(tmp_path))
    with pytest.raises(StudyError, match=named):
        prepare(config(tmp_path, **change))


def test_resume_with_other_data_is_refused(tmp_path):
    import shutil

    from nas.data import BUNDLED_PNEUMONIAMNIST

    prepare(config(tmp_path))
    other = tmp_path / "other.npz"
    shutil.copyfile(BUNDLED_PNEUMONIAMNIST, other)
    with other.open("ab") as f:  # same arrays, different bytes: a different file is different data
        f.write(b"\0")
    with pytest.raises(StudyError, match="data"):
        prepare(config(tmp_path, data=str(other)))


@pytest.mark.parametrize("url,message", [
    ("not-a-url", "not a database URL"),
    ("sqlite:////nonexistent-dir/x/y.db", "cannot open storage"),
    ("postgresql://nobody@127.0.0.1:1/nas", "cannot open storage"),
])
def test_bad_storage_is_one_line_error(url, message):
    with pytest.raises((ConfigError, StudyError), match=message) as info:
        open_storage(url)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("field,value,message", [
    ("objectives", ("auc", "latncy_p95"), "did you mean 'latency_p95'"),
    ("task", "xrya", "did you mean 'xray'"),
    ("sampler", "nsga3", "valid: gp, nsga2, random, tpe"),
    ("target_sensitivity", 1.5, "--target-sensitivity"),
    ("trials", 0, "--trials"),
])
def test_bad_options_are_named(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        prepare(config(tmp_path, **{field: value}))


def test_processes_creating_one_storage_at_once_all_succeed(tmp_path):
    """Workers started together on a fresh database race to create its tables; none may fail."""
    import subprocess
    import sys

    code = f"from nas.search.study import open_storage; open_storage('sqlite:///{tmp_path}/s.db'); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [out.strip() for out, _ in outputs] == ["ok"] * 4, [err[-300:] for _, err in outputs]
