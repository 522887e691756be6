"""Search-space YAML: the shipped spaces load and sample buildable models, baselines replay exactly, and a bad
space is rejected with the file, the field and what to do."""

from pathlib import Path

import optuna
import pytest
import torch
import yaml

from nas.errors import ConfigError
from nas.models import create_model
from nas.spaces import (
    Distribution, baseline_params, for_data, for_precisions, list_spaces, load_space, sample_spec,
)
from nas.spec import CompressionSpec, TrainingSpec
from nas.tasks import list_tasks

SHIPPED = Path(__file__).resolve().parents[2] / "search_spaces"

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True)
def _away_from_repo(tmp_path, monkeypatch):
    """Spaces are looked up in ./search_spaces first; run elsewhere so only the shipped ones are seen."""
    monkeypatch.chdir(tmp_path)


def _study(seed=0):
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), directions=["maximize"])


def _sample(space, n, seed=0, **kwargs):
    """n random candidates, asked and told like a real study so the sampler sees its history."""
    study = _study(seed)
    specs = []
    for _ in range(n):
        trial = study.ask()
        specs.append(sample_spec(space, trial, in_channels=1, num_classes=2, **kwargs))
        study.tell(trial, 0.5)
    return specs


def _forward(spec):
    model = create_model(spec).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *spec.input_shape))
    assert out.shape == (1, spec.num_classes)
    assert torch.isfinite(out).all()


def test_shipped_spaces_load():
    files = sorted(SHIPPED.glob("*.yaml"))
    spaces = {s.name: s for s in list_spaces()}
    assert {"xray", "xray-tiny"} <= set(spaces)
    assert set(spaces) == {f.stem for f in files}
    for f in files:
        space = load_space(f.stem)
        assert space == spaces[f.stem]
        assert space.path.resolve() == f.resolve()
        assert space.task in list_tasks()


def test_tiny_space_samples_models_that_run():
    space = load_space("xray-tiny")
    specs = _sample(space, 30)
    assert {s.family for s in specs} == set(space.families)
    for spec in specs:
        assert spec.baseline is None
        assert spec.input_shape == (1, 28, 28)
        for key, param in space.training.items():
            value = getattr(spec.training, key)
            assert param.contains(value) if isinstance(param, Distribution) else value == param
        _forward(spec)


def test_full_space_samples_models_that_build():
    space = load_space("xray")
    specs = _sample(space, 5, seed=1)
    for spec in specs:
        assert spec.family in space.families
        assert space.input_size.contains(spec.input_size)
        assert sum(p.numel() for p in create_model(spec).parameters()) > 0


def test_sampling_is_reproducible():
    space = load_space("xray")
    assert _sample(space, 3, seed=5) == _sample(space, 3, seed=5)


@pytest.mark.parametrize("name", ["xray", "xray-tiny"])
def test_baselines_replay_exactly(name):
    space = for_data(load_space(name), (28, 28))  # `native` baselines take the data's size
    assert space.baselines
    study = _study()
    for baseline in space.baselines:
        params = baseline_params(space, baseline)
        for key, value in params.items():
            if key == "family":
                assert value in space.families
            else:
                declared = space.input_size if key == "input_size" else space.training[key]
                assert declared.contains(value), f"{key}={value!r} outside the space"
        study.enqueue_trial(params, user_attrs={"baseline": baseline.name})
    for baseline in space.baselines:
        trial = study.ask()
        spec = sample_spec(space, trial, in_channels=1, num_classes=2)
        study.tell(trial, 0.5)
        assert spec.baseline == baseline.name
        assert spec.family == baseline.family
        assert spec.arch == baseline.arch
        assert spec.input_size == (baseline.input_size or space.baseline_input_size())
        assert spec.training == TrainingSpec(**space.training_defaults())


def test_tiny_baseline_runs():
    space = load_space("xray-tiny")
    study = _study()
    baseline = space.baselines[0]
    study.enqueue_trial(baseline_params(space, baseline), user_attrs={"baseline": baseline.name})
    _forward(sample_spec(space, study.ask(), in_channels=1, num_classes=2))


def test_max_epochs_caps_epochs():
    space = load_space("xray")
    assert space.training["epochs"].low > 1
    for spec in _sample(space, 5, max_epochs=1):
        assert spec.training.epochs == 1
    uncapped = _sample(space, 5, seed=3)
    assert _sample(space, 5, seed=3, max_epochs=1000) == uncapped


def test_a_one_model_task_refuses_a_second_stage_recipe(tmp_path):
    data = _tiny()
    data["classify_training"] = {"epochs": 3}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data))
    space = load_space(str(path))
    with pytest.raises(ConfigError, match="classify_training is for two-stage tasks .* move its knobs into training"):
        _sample(space, 1)


# --- errors -------------------------------------------------------------------------------------------------


def _tiny():
    return yaml.safe_load((SHIPPED / "xray-tiny.yaml").read_text())


def _families(d):
    return d["families"]


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: _families(d).update(dsconvv=_families(d).pop("dsconv")),
         ["families", "unknown family 'dsconvv'", "did you mean 'dsconv'"]),
        (lambda d: _families(d)["dsconv"].update(stem_widht=_families(d)["dsconv"].pop("stem_width")),
         ["families", "unknown parameter 'stem_widht'", "did you mean 'stem_width'"]),
        (lambda d: _families(d)["dsconv"].pop("se"), ["families", "dsconv", "missing parameter", "se"]),
        (lambda d: d["training"].update(lr={"low": 0.1, "high": 0.01, "default": 0.05}),
         ["training.lr", "low 0.1 is above high 0.01"]),
        (lambda d: d["training"].update(lr={"low": 0.0, "high": 0.01, "log": True, "default": 0.005}),
         ["training.lr", "log scale needs low > 0"]),
        (lambda d: d["training"].update(epochs={"low": 1, "high": 2, "default": 5}),
         ["training.epochs", "default 5 is outside [1, 2]"]),
        (lambda d: d["training"].update(lr={"choices": [0.001, 0.01], "default": 0.1}),
         ["training.lr", "not one of the choices"]),
        (lambda d: d["compression"].update(quant={"choices": ["fp32", "int4"]}),
         ["compression", "quant", "'int4' is not allowed", "fp32, fp16, int8"]),
        (lambda d: d["compression"].update(prune_ratio={"low": 0.0, "high": 1.0}),
         ["compression", "prune_ratio", "1.0 is not allowed; expected a number in [0, 1)"]),
        (lambda d: d["compression"].update(prune_ratio=-0.2),
         ["compression", "prune_ratio", "-0.2 is not allowed; expected a number in [0, 1)"]),
        (lambda d: d["training"].update(learning_rate=d["training"].pop("lr")),
         ["training", "unknown parameter 'learning_rate'"]),
        (lambda d: d["baselines"][0].update(family="dscnv"), ["baselines.0.family", "did you mean 'dsconv'"]),
        (lambda d: d["training"].update(augment={"low": 0.0, "high": 0.5}),
         ["training.augment", "needs a `default`"]),
        # each of these loaded and then failed inside every trial (issue 20)
        (lambda d: _families(d)["dsconv"].update(stage_width=-16),
         ["families", "dsconv.stage_width: -16 is not allowed; expected an integer in [1, 4096]"]),
        (lambda d: _families(d)["mobilenetv3"].update(width={"choices": [0, 0.5]}),
         ["families", "mobilenetv3.width: 0 is not allowed; expected a number in (0, 4]"]),
        (lambda d: _families(d)["dsconv"].update(stage_depth={"choices": [1, "eight"]}),
         ["families", "dsconv.stage_depth: 'eight' is not allowed; expected an integer in [1, 16]"]),
        (lambda d: _families(d)["dsconv"].update(activation={"low": 1, "high": 2}),
         ["families", "dsconv.activation: a low/high range is not allowed; give one of relu, hardswish"]),
        (lambda d: d["training"].update(batch_size=0),
         ["training", "batch_size: 0 is not allowed; expected an integer in [1, 65536]"]),
        (lambda d: d.update(input_size=-28), ["input_size", "-28 is not allowed; expected an integer in [8, 4096]"]),
        (lambda d: d.update(input_size="x" * 500), ["input_size", "'xxxx", "(502 characters)"]),
        (lambda d: d.update(classify_training={"epoch": 12}),
         ["classify_training", "unknown parameter 'epoch'", "did you mean 'epochs'"]),
        (lambda d: d.update(classify_training={"epochs": 0}),
         ["classify_training", "epochs: 0 is not allowed; expected an integer in [1, 10000]"]),
    ],
    ids=["family", "family-param", "missing-param", "low-high", "log-low", "default-range", "default-choice",
         "quant-int4", "prune-range", "prune-fixed", "training-param", "baseline-family", "no-default",
         "stage-width-negative", "mobilenet-width-zero", "eight-for-int", "range-for-name", "batch-size-zero",
         "input-size-negative", "long-value-cut", "classify-training-param", "classify-training-bounds"],
)
def test_bad_space_names_file_and_field(tmp_path, change, words):
    data = _tiny()
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ") and len(message) < 400
    for word in words:
        assert word in message


def _compressed_space(tmp_path, **compression):
    data = _tiny()
    data["compression"] = compression
    path = tmp_path / "compressed.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_space(str(path))


def test_sampler_offers_only_the_profiles_precisions(tmp_path):
    space = _compressed_space(tmp_path, quant={"choices": ["fp32", "fp16", "int8"]})
    cpu = for_precisions(space, ["fp32", "int8"], "cpu")
    assert cpu.compression["quant"].choices == ["fp32", "int8"]
    drawn = {s.compression.quant for s in _sample(cpu, 30)}
    assert drawn == {"fp32", "int8"}


def test_a_precision_the_profile_lacks_is_an_error_naming_its_precisions(tmp_path):
    space = _compressed_space(tmp_path, quant="fp16")
    with pytest.raises(ConfigError) as err:
        for_precisions(space, ["fp32", "int8"], "cpu")
    message = str(err.value)
    assert "compression.quant" in message and "fp16" in message and "'cpu'" in message and "fp32, int8" in message


def test_distillation_knobs_are_drawn_only_when_distilling(tmp_path):
    space = _compressed_space(tmp_path, distill={"choices": [False, True]}, temperature={"low": 2.0, "high": 8.0},
                              alpha={"low": 0.3, "high": 0.9}, prune_ratio={"choices": [0.0, 0.5]},
                              finetune_epochs={"low": 1, "high": 3})
    study = _study(5)
    seen = set()
    for _ in range(20):
        trial = study.ask()
        spec = sample_spec(space, trial, in_channels=1, num_classes=2)
        c = spec.compression
        assert ("temperature" in trial.params) == c.distill == ("alpha" in trial.params)
        assert ("finetune_epochs" in trial.params) == (c.prune_ratio > 0)
        seen.add((c.distill, c.prune_ratio > 0))
        study.tell(trial, 0.5)
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_baselines_ship_uncompressed(tmp_path):
    space = _compressed_space(tmp_path, prune_ratio=0.5, quant="int8", distill=True)
    study = _study()
    study.enqueue_trial(baseline_params(space, space.baselines[0]), user_attrs={"baseline": space.baselines[0].name})
    spec = sample_spec(space, study.ask(), in_channels=1, num_classes=2)
    assert spec.baseline and spec.compression == CompressionSpec()


def test_yaml_syntax_error_gives_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ntask: xray\nfamilies: [dsconv\n  training: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_space(str(path))
    assert str(path) in str(err.value)
    assert "line " in str(err.value)


def test_unknown_space_name_suggests():
    with pytest.raises(ConfigError) as err:
        load_space("xray-tni")
    assert "did you mean 'xray-tiny'" in str(err.value)
    assert all(f.stem in str(err.value) for f in SHIPPED.glob("*.yaml"))



def test_input_sizes_never_exceed_the_data_and_native_baselines_follow_it():
    space = load_space("xray")
    small = for_data(space, (28, 28))
    assert small.input_size == 28  # MedMNIST: the only choice not above 28 px
    assert {b.input_size for b in small.baselines} == {28}
    full = for_data(space, (224, 224))
    assert full.input_size.choices == [28, 64, 96, 128, 160, 224]
    assert {b.input_size for b in full.baselines} == {224}
    mid = for_data(space, (100, 120))
    assert mid.input_size.choices == [28, 64, 96]


def test_a_space_whose_sizes_are_all_above_the_data_names_the_field(tmp_path):
    space = load_space("xray").model_copy(update={"input_size": Distribution(choices=[64, 96])})
    with pytest.raises(ConfigError, match=r"input_size: every choice \(64, 96\) is above the data's 28 px"):
        for_data(space, (28, 28))
