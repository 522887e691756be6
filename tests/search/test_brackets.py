"""`--brackets 2`: Hyperband-style brackets, trial b of every two starting at rung b (skipping the cheapest)."""

import optuna
import pytest

from conftest import QUICK_PROFILE, REPO, SMALL_XRAY, run_nas


@pytest.mark.slow
def test_the_second_bracket_starts_at_the_second_rung(tmp_path):
    proc = run_nas("search", "--space", str(REPO / "tests/fixtures/xray-one-arch.yaml"), "--data", str(SMALL_XRAY),
                   "--hardware", str(QUICK_PROFILE), "--no-baselines", "--no-progress", "--study", "hb", "--trials",
                   "2", "--epochs", "2", "--rungs", "1,2", "--reduction-factor", "2", "--brackets", "2",
                   "--promote-after", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="hb", storage=f"sqlite:///{tmp_path / 'results' / 'hb' / 'study.db'}")
    trials = {t.number: t for t in study.trials}
    assert sorted(trials) == [0, 1]
    assert [trials[n].user_attrs["bracket"] for n in (0, 1)] == [0, 1]
    assert set(trials[0].user_attrs["rungs"]) == {"1", "2"}  # bracket 0: judged after 1 epoch, then trained on
    assert set(trials[1].user_attrs["rungs"]) == {"2"}  # bracket 1: straight to the 2-epoch rung
    assert all(t.state.name == "COMPLETE" for t in trials.values())
    assert len(trials[1].user_attrs["result"]["train_log"]["epoch_losses"]) == 2
    too_many = run_nas("search", "--study", "hb2", "--rungs", "1,2", "--brackets", "3", "--epochs", "2",
                       cwd=tmp_path)
    assert too_many.returncode == 2 and "brackets" in too_many.stderr
