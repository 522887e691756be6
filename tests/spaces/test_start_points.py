"""A space's start points: checked through the task's own sampler, and enqueued first when a study is created."""

import optuna
import pytest
import yaml

from conftest import QUICK_PROFILE, TINY_XRAY
from nas.errors import ConfigError
from nas.search.runner import SearchConfig, prepare
from nas.spaces import StartPoint, check_start_point, load_space
from nas.tasks import get_task

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _check(space, point, task="nodule"):
    sample = get_task(task).sample_candidate
    check_start_point(space, point, lambda t: sample(space, t, in_channels=3, max_epochs=None, epochs=None))


def test_the_nodule_spaces_start_point_fixes_every_parameter_it_draws():
    space = load_space("nodule")
    (point,) = space.start_points
    _check(space, point)  # raises if a name is unknown, a value outside the space, or a parameter left free
    study = optuna.create_study(directions=["maximize"])
    study.enqueue_trial(point.params)
    pipeline = get_task("nodule").sample_candidate(space, study.ask(), in_channels=3, max_epochs=None, epochs=None)
    screen, classify = (stage.spec for stage in pipeline.stages)
    assert (screen.family, screen.input_size, classify.family, classify.input_size) == ("dsconv", 32, "dsconv3d", 32)
    assert classify.compression.quant == "fp32" and screen.training.epochs == 8


@pytest.mark.parametrize("change, words", [
    (lambda p: p.update({"classify.dsconv3d.stage_widht[0]": 32}), ["'classify.dsconv3d.stage_widht[0]' is not a",
                                                                   "did you mean 'classify.dsconv3d.stage_width[0]'"]),
    (lambda p: p.update({"screen.input_size": 20}),
     ["screen.input_size = 20 is not one of the space's choices [16, 24, 32]"]),
    (lambda p: p.update({"lr": 0.5}), ["lr = 0.5 is outside the space's range [0.0005, 0.01]"]),
    (lambda p: p.pop("screen.dsconv.se"), ["missing: screen.dsconv.se"]),
], ids=["misspelt", "not-a-choice", "out-of-range", "left-free"])
def test_a_bad_start_point_names_the_file_the_point_and_the_parameter(change, words):
    space = load_space("nodule")
    params = dict(space.start_points[0].params)
    change(params)
    with pytest.raises(ConfigError) as err:
        _check(space, StartPoint(name="mine", params=params))
    message = str(err.value)
    assert message.startswith(f"{space.path}: start_points 'mine': ")
    for word in words:
        assert word in message


def _space_with_start_point(tmp_path, params):
    data = yaml.safe_load(load_space("xray-tiny").path.read_text())
    data["start_points"] = [{"name": "first", "params": params}]
    path = tmp_path / "with-start.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_new_study_enqueues_its_start_points_after_the_baselines(tmp_path):
    study = optuna.create_study(directions=["maximize"])
    sampled = get_task("xray").sample_candidate(load_space("xray-tiny"), study.ask(), in_channels=1, max_epochs=None,
                                                epochs=None)
    assert sampled.stages
    params = study.trials[0].params
    config = SearchConfig(space=str(_space_with_start_point(tmp_path, params)), data=str(TINY_XRAY),
                          hardware=str(QUICK_PROFILE), study="s", results=tmp_path / "results", progress=False)
    waiting = prepare(config).study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs for t in waiting][-1] == {"start_point": "first"}
    assert all("baseline" in t.user_attrs for t in waiting[:-1]) and len(waiting) > 1
    fixed = prepare(config).study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(fixed) == len(waiting)  # a resumed study does not enqueue it again
    bad = _space_with_start_point(tmp_path, {**params, "lr": 5.0})
    with pytest.raises(ConfigError, match="start_points 'first': lr = 5.0 is outside the space's range"):
        prepare(SearchConfig(space=str(bad), data=str(TINY_XRAY), hardware=str(QUICK_PROFILE), study="t",
                             results=tmp_path / "results", progress=False, start_points=False))
