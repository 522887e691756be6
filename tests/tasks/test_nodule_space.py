"""The nodule candidate's two training recipes: `training` for both stages, `classify_training` over it for stage 2."""

import yaml
from optuna.trial import FixedTrial

from nas.spaces import load_space
from nas.tasks.nodule.space import sample_nodule_spec

SPACE = load_space("nodule")


def _start(**changes):
    return FixedTrial({**SPACE.start_points[0].params, **changes})


def test_stage_two_trains_its_own_epochs_and_shares_the_rest():
    spec = sample_nodule_spec(SPACE, _start(epochs=5, **{"classify.epochs": 9}))
    assert (spec.screen.training.epochs, spec.classify.training.epochs) == (5, 9)
    assert spec.screen.training.model_copy(update={"epochs": 9}) == spec.classify.training


def test_max_epochs_caps_both_stages():
    spec = sample_nodule_spec(SPACE, _start(epochs=5, **{"classify.epochs": 9}), max_epochs=3)
    assert (spec.screen.training.epochs, spec.classify.training.epochs) == (3, 3)


def test_without_classify_training_both_stages_share_one_recipe(tmp_path):
    data = yaml.safe_load(SPACE.path.read_text())
    del data["classify_training"]
    data["start_points"][0]["params"].pop("classify.epochs")
    path = tmp_path / "shared-recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    space = load_space(str(path))
    spec = sample_nodule_spec(space, FixedTrial(dict(space.start_points[0].params)))
    assert spec.screen.training == spec.classify.training
    assert spec.classify.training.epochs == 8

