"""Hardware profile YAML: every shipped profile loads, and a bad one is rejected naming the file and the field."""

from pathlib import Path

import pytest
import yaml

from nas.errors import ConfigError
from nas.hardware import HardwareProfile, list_profiles, load_profile

SHIPPED = Path(__file__).resolve().parents[2] / "hardware_profiles"


@pytest.fixture(autouse=True)
def _away_from_repo(tmp_path, monkeypatch):
    """Profiles are looked up in ./hardware_profiles first; run elsewhere so only the shipped ones are seen."""
    monkeypatch.chdir(tmp_path)


def _cpu():
    return yaml.safe_load((SHIPPED / "cpu.yaml").read_text())


def test_every_shipped_profile_loads():
    files = sorted(SHIPPED.glob("*.yaml"))
    assert files, f"no profiles in {SHIPPED}"
    profiles = {p.name: p for p in list_profiles()}
    assert set(profiles) == {f.stem for f in files}
    for f in files:
        profile = load_profile(f.stem)
        assert isinstance(profile, HardwareProfile)
        assert profile == profiles[f.stem]
        assert profile.path.resolve() == f.resolve()
        assert {50, 95, 99} <= set(profile.protocol.percentiles)


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**_cpu(), "name": "mine", "batch": 4}))
    profile = load_profile(str(path))
    assert (profile.name, profile.batch, profile.path) == ("mine", 4, path)


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda d: d.update(colour="blue"), "colour", "not permitted"),
        (lambda d: d["protocol"].update(warmup_secs=1), "protocol.warmup_secs", "not permitted"),
        (lambda d: d.update(batch="one"), "batch", "integer"),
        (lambda d: d.update(backend="tensorflow"), "backend", "onnxruntime"),
        (lambda d: d["protocol"].update(percentiles=[50, 99]), "protocol.percentiles", "95"),
        (lambda d: d.update(precisions=["fp64"]), "precisions", "fp32"),
    ],
    ids=["unknown-field", "unknown-protocol-field", "batch-type", "backend", "percentiles", "precision"],
)
def test_malformed_profile_names_file_and_field(tmp_path, change, field, words):
    data = _cpu()
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_profile(str(path))
    message = str(err.value)
    assert f"{path}: {field}" in message
    assert words in message


def test_invalid_yaml_syntax(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nprecisions: [fp32\nbatch: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_profile(str(path))
    assert str(path) in str(err.value)
    assert "line 3" in str(err.value)


def test_missing_profile_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as err:
        load_profile(str(path))
    assert str(path) in str(err.value)


def test_unknown_name_lists_valid_and_suggests():
    with pytest.raises(ConfigError) as err:
        load_profile("cpuu")
    message = str(err.value)
    assert "did you mean 'cpu'" in message
    for f in SHIPPED.glob("*.yaml"):
        assert f.stem in message


def test_unknown_name_without_near_miss():
    with pytest.raises(ConfigError) as err:
        load_profile("tpu-v5")
    assert "did you mean" not in str(err.value)
    assert "valid: " in str(err.value)
    assert all(f.stem in str(err.value) for f in SHIPPED.glob("*.yaml"))
