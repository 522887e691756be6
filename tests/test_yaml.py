"""The YAML reader refuses what no configuration file needs: alias bombs, huge files, binary content."""

from __future__ import annotations

import time

import pytest

from nas import _yaml
from nas.errors import ConfigError, shown
from nas.spaces import load_space

from conftest import REPO

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def test_alias_bomb_is_refused_in_milliseconds_with_a_short_message(tmp_path):
    """400 bytes of nested aliases used to cost 486 s of CPU and a 3 GB validation message."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 500
    started = time.process_time()
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    assert time.process_time() - started < 2
    assert str(err.value) == f"{path}: not valid YAML: its aliases expand to more than {_yaml.MAX_NODES} values"


def test_ordinary_aliases_still_load(tmp_path):
    text = (REPO / "search_spaces" / "xray-tiny.yaml").read_text()
    assert "    stage_width: {choices: [16, 32]}\n" in text
    path = tmp_path / "aliased.yaml"
    path.write_text("x-widths: &w {choices: [16, 32]}\n" + text.replace("    stage_width: {choices: [16, 32]}\n",
                                                                        "    stage_width: *w\n"))
    assert _yaml.read_mapping(path)["families"]["dsconv"]["stage_width"] == {"choices": [16, 32]}


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="refers to the mapping or list that contains it"):
        _yaml.read_mapping(path)


def test_oversized_and_binary_files_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n# " + "x" * _yaml.MAX_BYTES + "\n")
    with pytest.raises(ConfigError, match=f"bytes; a configuration file may hold at most {_yaml.MAX_BYTES}"):
        _yaml.read_mapping(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a text file"):
        _yaml.read_mapping(binary)


def test_values_in_messages_are_cut():
    assert shown("x" * 10) == "'xxxxxxxxxx'"
    cut = shown(["lol"] * 1000)
    assert len(cut) < 120 and cut.endswith("(7000 characters)")


def test_a_long_wrong_value_is_quoted_cut(tmp_path):
    path = tmp_path / "long.yaml"
    text = (REPO / "search_spaces" / "xray-tiny.yaml").read_text()
    path.write_text(text.replace("name: xray-tiny", "name: [" + ", ".join(["lol"] * 1000) + "]"))
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    assert str(err.value).startswith(f"{path}: name: Input should be a valid string (got ['lol', 'lol'")
    assert str(err.value).endswith("... (7000 characters))") and len(str(err.value)) < 300
