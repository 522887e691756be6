"""Bad input gets a one-line error naming the bad value, the valid options and the closest match."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from conftest import QUICK_PROFILE, SMALL_XRAY, run_nas
from nas.cli.main import build_parser
from test_yaml import BOMB

FAST = ["--hardware", str(QUICK_PROFILE), "--epochs", "1", "--trials", "1"]


@pytest.mark.parametrize("args,expected", [
    (["--task", "xrya"], "unknown task 'xrya' (did you mean 'xray'?); valid: nodule, nodule-malignancy, xray"),
    (["--hardware", "cpuu"], "unknown hardware profile 'cpuu' (did you mean 'cpu'?)"),
    (["--space", "xray-tiniy"], "unknown search space 'xray-tiniy' (did you mean 'xray-tiny'?)"),
    (["--objectives", "auc,latency"], "unknown objective 'latency'"),
    (["--data", "no/such/file.npz"], "data not found: no/such/file.npz"),
])
def test_unknown_names_and_paths(tmp_path, args, expected):
    hardware = [] if "--hardware" in args else ["--hardware", str(QUICK_PROFILE)]
    space = [] if "--space" in args else ["--space", "xray-tiny"]
    proc = run_nas("search", *space, *hardware, "--epochs", "1", "--trials", "1", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert proc.stdout == ""
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*/trials"))


def test_malformed_space_names_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntask: xray\ninput_size: 28\nfamilies:\n  dsconv: {stem_width: [8\n")
    proc = run_nas("search", "--space", str(bad), *FAST, cwd=tmp_path)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "line" in proc.stderr
    bad.write_text("name: bad\ntask: xray\ninput_size: 28\nfamilies:\n  dsconv:\n    stem_width: {choices: []}\n"
                   "training: {lr: 0.01, weight_decay: 0, epochs: 1, augment: 0}\n")
    proc = run_nas("search", "--space", str(bad), *FAST, cwd=tmp_path)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "families.dsconv.stem_width" in proc.stderr


def test_single_class_data_is_refused(tmp_path):
    arrays = {f"{s}_images": np.zeros((4, 28, 28), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.zeros((4, 1), np.uint8) for s in ("train", "val", "test")})
    np.savez(tmp_path / "one.npz", **arrays)
    proc = run_nas("search", "--space", "xray-tiny", *FAST, "--data", str(tmp_path / "one.npz"), cwd=tmp_path)
    assert proc.returncode == 2 and "one.npz: the training split has a single class" in proc.stderr


# --- issue 20: hostile input on the data and configuration side --------------------------------------------------

BAD_STUDIES = ["../../escaped", "/tmp/absolute", "a/b", ".hidden", "name with space", "x" * 101]


@pytest.mark.parametrize("command", ["search", "worker", "report", "pick", "export", "dashboard"])
@pytest.mark.parametrize("bad", BAD_STUDIES)
def test_every_command_confines_the_study_name(command, bad, capsys):
    """`--study '../../escaped'` or an absolute path wrote study.db, pareto.json and trials/ outside --results."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--study", bad])
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert f"argument --study: study name {repr(bad)[:80]}" in stderr
    assert "is not allowed; use a letter or digit, then up to 99 letters, digits, '.', '_' or '-'" in stderr


def test_warm_start_study_is_confined_too(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--warm-start", "../other"])
    assert "argument --warm-start: study name '../other' is not allowed" in capsys.readouterr().err


def test_escaping_study_writes_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = run_nas("search", "--space", "xray-tiny", *FAST, "--study", "../../escaped", cwd=work)
    assert proc.returncode == 2 and "study name '../../escaped' is not allowed" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and not list(work.iterdir())


@pytest.mark.parametrize("budget", ["0", "-1"])
def test_non_positive_latency_budget_is_refused(tmp_path, budget):
    """`--max-latency-ms -1` trained every trial, then crashed in the report (math domain error)."""
    proc = run_nas("search", "--space", "xray-tiny", *FAST, "--max-latency-ms", budget, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"error: --max-latency-ms must be above 0, got {budget}\n"
    assert not (tmp_path / "results").exists()


def test_alias_bomb_space_is_refused_quickly(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    proc = run_nas("search", "--space", str(bomb), *FAST, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {bomb}: not valid YAML: its aliases expand to more than 100000 values\n"


def test_a_readme_as_data_is_named_not_pickle_advice(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# not data\n")
    proc = run_nas("search", "--space", "xray-tiny", *FAST, "--data", str(readme), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {readme}: cannot be read as an .npz archive")
    assert "pickle" not in proc.stderr


def test_bad_labels_are_refused_before_any_trial(tmp_path):
    """Validation labels 7 and -1 used to count as negatives and the search reported AUC 0.83 with exit 0."""
    arrays = {f"{s}_images": np.zeros((6, 28, 28), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.array([[0], [1]] * 3) for s in ("train", "test")})
    arrays["val_labels"] = np.array([[0], [1], [7], [-1], [1], [0]])
    np.savez(tmp_path / "labels.npz", **arrays)
    proc = run_nas("search", "--space", "xray-tiny", *FAST, "--data", str(tmp_path / "labels.npz"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "labels.npz: val split: 2 of 6 labels are not one of the classes 0, 1 (found -1, 7)" in proc.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*/trials"))


def test_storage_password_is_masked_in_errors(tmp_path):
    proc = run_nas("search", "--space", "xray-tiny", *FAST, "--storage",
                   "postgresql://nas:hunter2@127.0.0.1:1/nas", cwd=tmp_path)
    assert proc.returncode == 2 and "cannot open storage" in proc.stderr
    assert "hunter2" not in proc.stderr and "nas:***@127.0.0.1:1/nas" in proc.stderr


@pytest.mark.postgres
def test_all_failed_search_exits_non_zero_and_masks_the_password(tmp_path, postgres_url):
    """A search whose every trial failed exited 0 with an empty front; the start line printed the password."""
    space = tmp_path / "broken.yaml"
    space.write_text("name: broken\ntask: xray\ninput_size: 28\nfamilies:\n  resnet: {variant: resnet999}\n"
                     "training: {lr: 0.01, weight_decay: 0, epochs: 1, augment: 0}\n")
    with_password = postgres_url.replace("postgresql://nas@", "postgresql://nas:hunter2@")  # trust auth ignores it
    proc = run_nas("search", "--space", str(space), *FAST[:-1], "2", "--no-baselines", "--study", "broken",
                   "--storage", with_password, "--data", str(SMALL_XRAY), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "hunter2" not in proc.stderr and "postgresql://nas:***@127.0.0.1" in proc.stderr
    assert "error: every trial of study 'broken' failed (2), so there is no front; trial 0: " in proc.stderr
    assert not (tmp_path / "results" / "broken" / "pareto.json").exists()


@pytest.mark.slow
def test_sigterm_in_final_phase_then_damaged_files_give_messages(tmp_path):
    """SIGTERM while the front was re-measured ended the process with 143 and no word; a truncated pareto.json
    (report, pick) or model.pt (export) gave a traceback. Each now says what is wrong, and no trial is lost."""
    args = ["search", "--space", "xray-tiny", *FAST, "--data", str(SMALL_XRAY), "--no-baselines", "--study", "s"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli.main", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("re-measuring"):
            proc.send_signal(signal.SIGTERM)
            break
    _, rest = proc.communicate(timeout=300)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert ("interrupted while writing the front: the 1 completed trial(s) of study 's' are kept; run the same "
            "command again to write pareto.json and the report") in stderr
    assert "Traceback" not in stderr

    def trials() -> list[tuple]:
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'results' / 's' / 'study.db'}")
        return [(t.number, t.state, t.values, t.params, t.user_attrs) for t in study.trials]

    kept = trials()
    assert [t[1].name for t in kept] == ["COMPLETE"]
    resumed = run_nas(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert trials() == kept
    pareto = tmp_path / "results" / "s" / "pareto.json"
    assert json.loads(pareto.read_text())["members"][0]["trial"] == kept[0][0]

    good = pareto.read_bytes()
    pareto.write_bytes(good[: len(good) // 2])
    for verb in ("report", "pick"):
        proc = run_nas(verb, "--study", "s", cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {Path('results/s/pareto.json')}: damaged, "
                                                               "not valid JSON ("), proc.stderr
        assert proc.stderr.count("\n") == 1
    pareto.write_bytes(good)
    weights = tmp_path / "results" / "s" / "trials" / str(kept[0][0]) / "model.pt"
    shutil.copy(weights, tmp_path / "model.pt.good")
    weights.write_bytes(weights.read_bytes()[:1000])
    proc = run_nas("export", "--study", "s", "--trial", str(kept[0][0]), "--out", "shipped", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{Path('results/s/trials') / str(kept[0][0]) / 'model.pt'}: cannot be read as PyTorch weights (" \
        in proc.stderr
    assert trials() == kept
