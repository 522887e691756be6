"""The shadow-mode log: what a row keeps (and never keeps), labels matched to inputs, append-only, crash-safe."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from nas._io import file_digest
from nas.clinical.shadow import append_predictions, read_labels, read_log
from nas.errors import DataError
from clinical.conftest import write_v1_log

pytestmark = pytest.mark.slow  # the exported model comes from a real (tiny) search


def _row(name: str, score: float, **extra) -> dict:
    return {"input": f"/scans/ward-a/{name}", "score": score, "decision": int(score >= 0.5), "refer": False,
            "ms": 2.5, **extra}


def test_rows_keep_their_fields_labels_model_identity_and_utc_time(exported_model, tmp_path):
    log = tmp_path / "results" / "shadow" / "ward-a.db"
    rows = [_row("PNEUMONIA/a.jpeg", 0.9, sop_instance_uid="1.2.840.1"), _row("NORMAL/b.jpeg", 0.2),
            _row("NORMAL/c.jpeg", 0.55)]
    rows[1]["refer"] = True
    before = datetime.now(timezone.utc)
    # Keys by file name and by a path relative to some root both match; c.jpeg has no read yet.
    assert append_predictions(log, rows, {"a.jpeg": 1, "ward-a/NORMAL/b.jpeg": 0}, model_dir=exported_model) == 3
    got = read_log(log)
    assert [p.input for p in got.predictions] == [r["input"] for r in rows]
    assert [p.label for p in got.predictions] == [1, 0, None]
    assert [p.refer for p in got.predictions] == [False, True, False]
    assert [(p.score, p.decision, p.ms) for p in got.predictions] == [(r["score"], r["decision"], 2.5) for r in rows]
    assert [p.sop_instance_uid for p in got.predictions] == ["1.2.840.1", None, None]
    io = json.loads((exported_model / "io.json").read_text())
    sha = file_digest(exported_model / io["file"])
    assert {p.model_sha256 for p in got.predictions} == {sha}
    assert got.models[sha]["export_dir"] == str(exported_model.resolve()) and got.models[sha]["io"] == io
    for p in got.predictions:
        stamp = datetime.fromisoformat(p.utc)
        assert stamp.utcoffset() == timedelta(0) and before - timedelta(seconds=1) <= stamp <= datetime.now(timezone.utc)


def test_no_field_beyond_the_fixed_columns_reaches_the_log(exported_model, tmp_path):
    log = tmp_path / "log.db"
    append_predictions(log, [_row("a.jpeg", 0.7, patient_name="DOE^JANE", patient_id="PID-4711",
                                  birth_date="19700101")], None, model_dir=exported_model)
    with sqlite3.connect(log) as db:
        columns = [c[1] for c in db.execute("PRAGMA table_info(predictions)")]
        dump = "\n".join(db.iterdump())
    assert columns == ["id", "utc", "model_sha256", "input", "sop_instance_uid", "score", "decision", "refer", "ms",
                       "label", "chain"]
    assert not any(v in dump for v in ("DOE^JANE", "PID-4711", "19700101"))


def test_log_is_append_only_and_grows_across_calls(exported_model, tmp_path):
    log = tmp_path / "log.db"
    append_predictions(log, [_row("a.jpeg", 0.7)], None, model_dir=exported_model)
    append_predictions(log, [_row("b.jpeg", 0.1), _row("c.jpeg", 0.3)], None, model_dir=exported_model)
    assert [p.id for p in read_log(log).predictions] == [1, 2, 3]
    db = sqlite3.connect(log)
    for statement in ("UPDATE predictions SET score = 0", "DELETE FROM predictions"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    db.close()
    assert len(read_log(log).predictions) == 3


def test_a_killed_writer_loses_at_most_the_row_it_was_writing(exported_model, tmp_path):
    log = tmp_path / "log.db"
    writer = f"""
import sys
from nas.clinical.shadow import append_predictions
for i in range(100000):
    append_predictions({str(log)!r}, [{{"input": f"case{{i}}.png", "score": 0.5, "decision": 1, "refer": False,
                                       "ms": 1.0}}], None, model_dir={str(exported_model)!r})
    print(i + 1, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    done = 0
    while done < 30:
        done = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)  # mid-loop: possibly inside a transaction
    proc.wait()
    rest = proc.stdout.read().split()
    done = int(rest[-1]) if rest else done
    time.sleep(0.1)
    logged = read_log(log).predictions
    assert done <= len(logged) <= done + 1
    assert [p.input for p in logged] == [f"case{i}.png" for i in range(len(logged))]


def test_labels_that_match_no_input_name_a_few_of_each(exported_model, tmp_path):
    with pytest.raises(DataError, match=r"no case matches an input.*x1\.png, x2\.png, x3\.png.*ward-a/a\.jpeg"):
        append_predictions(tmp_path / "log.db", [_row("a.jpeg", 0.7)], {f"x{i}.png": 1 for i in range(1, 6)},
                           model_dir=exported_model)
    assert not (tmp_path / "log.db").exists()  # nothing written before the check


def test_an_ambiguous_label_key_asks_for_a_longer_path(exported_model, tmp_path):
    rows = [_row("NORMAL/a.jpeg", 0.2), _row("PNEUMONIA/a.jpeg", 0.8)]
    with pytest.raises(DataError, match="'a.jpeg' matches 2 inputs.*longer path"):
        append_predictions(tmp_path / "log.db", rows, {"a.jpeg": 1}, model_dir=exported_model)
    append_predictions(tmp_path / "log.db", rows, {"PNEUMONIA/a.jpeg": 1}, model_dir=exported_model)
    assert [p.label for p in read_log(tmp_path / "log.db").predictions] == [None, 1]


def test_a_row_without_a_required_field_is_refused_before_anything_is_written(exported_model, tmp_path):
    rows = [_row("a.jpeg", 0.7), {"input": "b.jpeg", "score": 0.2}]
    with pytest.raises(ValueError, match="'b.jpeg' lacks decision, refer, ms"):
        append_predictions(tmp_path / "log.db", rows, None, model_dir=exported_model)
    assert not (tmp_path / "log.db").exists()


def test_read_labels_checks_header_and_values(tmp_path):
    good = tmp_path / "reads.csv"
    good.write_text("input,label\nward-a/a.jpeg,1\nb.jpeg,0\n")
    assert read_labels(good) == {"ward-a/a.jpeg": 1, "b.jpeg": 0}
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("file,label\na.jpeg,1\n")
    with pytest.raises(DataError, match=r"header.csv: needs a header with columns 'input' and 'label'; found: file"):
        read_labels(bad_header)
    bad_value = tmp_path / "value.csv"
    bad_value.write_text("input,label\na.jpeg,pneumonia\n")
    with pytest.raises(DataError, match="label 'pneumonia' for 'a.jpeg' must be 1"):
        read_labels(bad_value)


def test_a_log_of_another_schema_version_or_kind_is_refused(exported_model, tmp_path):
    with pytest.raises(DataError, match="shadow log not found"):
        read_log(tmp_path / "missing.db")
    newer = tmp_path / "newer.db"
    append_predictions(newer, [_row("a.jpeg", 0.7)], None, model_dir=exported_model)
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=3")
    for call in (lambda: read_log(newer),
                 lambda: append_predictions(newer, [_row("b.jpeg", 0.7)], None, model_dir=exported_model)):
        with pytest.raises(DataError, match="schema version 3; this nas reads version 2"):
            call()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE patients (name TEXT)")
    with pytest.raises(DataError, match="not a shadow log"):
        read_log(other)


def _three_rows(log, exported_model) -> str:
    """A log of three predictions; returns its verified head hash."""
    append_predictions(log, [_row("a.jpeg", 0.7), _row("b.jpeg", 0.1)], {"a.jpeg": 1}, model_dir=exported_model)
    append_predictions(log, [_row("c.jpeg", 0.3)], None, model_dir=exported_model)
    integrity = read_log(log).integrity
    assert (integrity.status, integrity.rows, integrity.broken_at) == ("verified", 3, None)
    return integrity.head


def test_replace_on_a_logged_id_or_model_is_refused(exported_model, tmp_path):
    """INSERT OR REPLACE deletes the old row without firing DELETE triggers; a BEFORE INSERT trigger on ids (and
    model digests) already logged refuses it, and the models table is append-only too."""
    log = tmp_path / "log.db"
    head = _three_rows(log, exported_model)
    db = sqlite3.connect(log)
    for statement in ("INSERT OR REPLACE INTO predictions SELECT id, utc, model_sha256, input, sop_instance_uid, 0.01, "
                      "0, refer, ms, label, chain FROM predictions WHERE id = 1",
                      "REPLACE INTO models SELECT sha256, '/elsewhere', file, io_json, first_seen_utc FROM models",
                      "UPDATE models SET export_dir = '/elsewhere'", "DELETE FROM models"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    db.close()
    got = read_log(log)
    assert [p.score for p in got.predictions] == [0.7, 0.1, 0.3] and got.predictions[0].decision == 1
    assert got.integrity.head == head and len(got.models) == 1


def _tamper(log, *statements: str) -> None:
    """What someone with write access can do: drop every trigger, then change the log."""
    with sqlite3.connect(log) as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            db.execute(statement)


@pytest.mark.parametrize(("statements", "broken_at"), [
    (("UPDATE predictions SET score = 0.9, decision = 1 WHERE id = 2",), 2),
    (("DELETE FROM predictions WHERE id = 2",), 3),  # the row after the gap no longer follows its predecessor
    (("UPDATE models SET export_dir = '/elsewhere'",), 1),  # every row names its model record
])
def test_a_log_changed_by_hand_breaks_the_chain_at_that_row(exported_model, tmp_path, statements, broken_at):
    log = tmp_path / "log.db"
    _three_rows(log, exported_model)
    _tamper(log, *statements)
    integrity = read_log(log).integrity
    assert (integrity.status, integrity.broken_at, integrity.head) == ("broken", broken_at, None)
    assert integrity.message.startswith(f"TAMPERED: the hash chain breaks at row {broken_at} (")


def test_a_log_written_before_the_chain_is_read_but_said_unverifiable(exported_model, tmp_path):
    """Schema version 1 (no chain column): read, figures intact, integrity 'unchained'; not appended to."""
    log = write_v1_log(tmp_path / "v1.db")
    got = read_log(log)
    assert [(p.input, p.score, p.label) for p in got.predictions] == [("a.png", 0.8, 1)]
    assert got.integrity.status == "unchained" and "written before rows were hash-chained" in got.integrity.message
    with pytest.raises(DataError, match="schema version 1, written before rows were hash-chained.*new log"):
        append_predictions(log, [_row("b.jpeg", 0.2)], None, model_dir=exported_model)
    assert len(read_log(log).predictions) == 1


def test_an_openvino_irs_identity_covers_its_weights(tmp_path):
    """An IR is its .xml (the graph) and its .bin (the weights): new weights under the same graph are a new model."""
    from nas.clinical.shadow import _model_record

    (tmp_path / "io.json").write_text(json.dumps({"file": "model.xml", "runtime": "openvino"}))
    (tmp_path / "model.xml").write_text("<net/>")
    (tmp_path / "model.bin").write_bytes(b"\x00" * 16)
    before, name, _ = _model_record(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"\x01" * 16)
    after, _, _ = _model_record(tmp_path)
    assert name == "model.xml" and before != after
