"""Warm start: an earlier study's front is enqueued first, and its trained models are reused, not retrained."""

import json

import pytest

from conftest import FIXTURES, QUICK_PROFILE
from nas.errors import ConfigError
from nas.search.final import finalize
from nas.search.runner import SearchConfig, prepare, run_search


def config(tmp_path, study, **overrides) -> SearchConfig:
    base = dict(space=str(FIXTURES / "xray-one-arch.yaml"), hardware=str(QUICK_PROFILE), study=study,
                results=tmp_path / "results", trials=3, epochs=1, progress=False, baselines=False)
    return SearchConfig(**{**base, **overrides})


@pytest.mark.slow
def test_warm_start_enqueues_the_front_and_reuses_its_trained_models(tmp_path):
    earlier = run_search(config(tmp_path, "first"))
    front = finalize(earlier, log=lambda _: None)["members"]
    params = {m["trial"]: earlier.study.trials[m["trial"]].params for m in front}

    later = run_search(config(tmp_path, "second", warm_start="first", trials=len(front) + 1))
    enqueued = later.study.trials[:len(front)]
    assert [t.user_attrs["warm_start"] for t in enqueued] == [{"study": "first", "trial": n} for n in params]
    assert [t.params for t in enqueued] == list(params.values())
    for t in enqueued:  # same architecture and recipe: started from the trained weights, no training epoch spent
        result = t.user_attrs["result"]
        assert result["train_log"]["warm_start"]["study"] == "first"
        assert result["train_log"]["epoch_losses"] == []
        assert any("not trained from scratch" in flag for flag in result["flags"])
        source = earlier.study.trials[result["train_log"]["warm_start"]["trial"]].user_attrs["result"]
        unpruned = not result["spec"]["compression"]["prune_ratio"]  # nothing fine-tuned: the very same model
        if unpruned and result["spec"]["compression"] == source["spec"]["compression"]:
            assert result["metrics"]["val"]["auc"] == pytest.approx(source["metrics"]["val"]["auc"], abs=1e-6)
    # One architecture at two prune ratios: at most two shapes were ever timed in phase 1, and the second study, on
    # the same machine and results root, timed none.
    def timed(run):
        records = [json.loads(p.read_text()) for p in run.context.results_dir.glob("trials/*/measurement.json")]
        return sum(r["reused_from"] is None for r in records), len(records)

    first_timed, first_total = timed(earlier)
    assert first_total == 3 and first_timed <= 2 and earlier.context.measurements.measured == first_timed
    assert timed(later)[0] == 0 and later.context.measurements.measured == 0


def test_warm_start_needs_the_same_task_and_profile(tmp_path):
    run_search(config(tmp_path, "cpu-study", trials=1))
    finalize(prepare(config(tmp_path, "cpu-study", trials=1)), log=lambda _: None)
    other = tmp_path / "other-profile.yaml"
    other.write_text(QUICK_PROFILE.read_text().replace("name: cpu-quick", "name: cpu-other"))
    with pytest.raises(ConfigError, match="it is a hardware 'cpu-quick' study, this one 'cpu-other'"):
        prepare(config(tmp_path, "next", hardware=str(other), warm_start="cpu-study"))
    with pytest.raises(ConfigError, match="--warm-start nowhere: no study folder"):
        prepare(config(tmp_path, "next2", warm_start="nowhere"))
