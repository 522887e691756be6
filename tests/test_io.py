"""File helpers: atomic writes reach the disk before they replace the old file and follow the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from nas import _io
from nas.errors import StudyError


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """They were always 0600 (mkstemp's mode), which a results folder shared with a group cannot read."""
    path = tmp_path / "out.json"
    code = f"import os; os.umask({umask}); from nas._io import write_json; write_json({str(path)!r}, {{'a': 1}})"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert _io.read_json(path) == {"a": 1}


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    _io.atomic_write_bytes(tmp_path / "f.bin", b"x" * 10)
    assert calls == ["fsync", "replace"]
    assert (tmp_path / "f.bin").read_bytes() == b"x" * 10
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left


def test_a_truncated_json_file_is_a_study_error_naming_it(tmp_path):
    path = tmp_path / "pareto.json"
    path.write_text('{"schema_version": 1, "members": [{"trial": 0, "sp')
    with pytest.raises(StudyError) as err:
        _io.read_json(path)
    assert str(err.value).startswith(f"{path}: damaged, not valid JSON (")
