"""One tiny real search shared by every test in tests/report/ (the search is the slow part, about a minute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import QUICK_PROFILE, SMALL_XRAY, run_nas, shared_once

SEARCH = ("search", "--space", "xray-tiny", "--data", str(SMALL_XRAY), "--hardware", str(QUICK_PROFILE),
          "--epochs", "1", "--trials", "3", "--study", "b")


def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding results/b/ after `nas search ... --trials 3 --study b`; run once per test run.

    Tests that change the study work on a copy, so the report the search wrote stays as it wrote it.
    """
    def make(cwd: Path) -> None:
        proc = run_nas(*SEARCH, cwd=cwd)
        assert proc.returncode == 0, proc.stderr

    return shared_once(tmp_path_factory, "report-study", make)
