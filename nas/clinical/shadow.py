"""Shadow mode's log: every prediction a deployed model made beside the radiologists, append-only, in SQLite.

SQLite (stdlib) rather than JSON lines because one committed row is all-or-nothing: a killed `nas predict`
loses at most the row it was writing, never leaves a half line, and two processes can append to one log.
Each row is committed on its own (WAL journal, so a commit costs no fsync of the whole file); triggers refuse
UPDATE, DELETE and an INSERT (OR REPLACE) on an id or model already there, in both tables, so the log only grows.

Triggers stop mistakes, not a determined editor (`DROP TRIGGER` works on any SQLite file), so tampering is made
evident as well: each row carries `chain`, the SHA-256 of the previous row's `chain` (64 zeros for the first), the
digest of its model's record and its own values. `read_log` recomputes the chain and names the first row that does
not match: a row changed by hand, a model record changed, or a row removed before it. Anyone able to write the file
can recompute the whole chain; the last row's hash (`head`, printed by `nas monitor`) kept elsewhere detects that.
A log written before the chain (schema version 1) is read and said to be unverifiable; it is not appended to. Only the columns below are written, whatever else a row carries, so no
patient-identifying field (name, ID, birth date, address) can reach the log (settled point 14). The model each
row came from is recorded by its deployed file's digest, with its export folder and io.json kept once per model,
so `nas monitor` works from the log alone (on another machine, after the export folder moved).

Case files (`--labels`, `--groups`): CSV with a header, one case per line, keyed by `input`. A key matches an
input whose trailing path components equal the key's, so a bare file name, a path relative to the data root and
a full path all work; a key that matches two inputs is an error (give a longer path).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from nas._io import file_digest
from nas.hardware.deploy import artifact_files
from nas.errors import DataError

__all__ = ["SCHEMA_VERSION", "Integrity", "LoggedPrediction", "ShadowLog", "append_predictions", "match_cases",
           "read_case_csv", "read_labels", "read_log"]

SCHEMA_VERSION = 2
"""PRAGMA user_version of a shadow log; a log of another version is refused, not misread. Version 1 (no hash
chain) is still read, and reported as unverifiable."""
UNCHAINED_VERSION = 1
GENESIS = "0" * 64
"""The `chain` value before the first row."""
ROW_FIELDS = ("input", "score", "decision", "refer", "ms")
"""What every row handed to `append_predictions` must carry (`sop_instance_uid` is optional)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    sha256 TEXT PRIMARY KEY, export_dir TEXT NOT NULL, file TEXT NOT NULL, io_json TEXT NOT NULL,
    first_seen_utc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, utc TEXT NOT NULL, model_sha256 TEXT NOT NULL REFERENCES models(sha256),
    input TEXT NOT NULL, sop_instance_uid TEXT, score REAL NOT NULL, decision INTEGER NOT NULL CHECK (decision IN (0, 1)),
    refer INTEGER NOT NULL CHECK (refer IN (0, 1)), ms REAL NOT NULL, label INTEGER CHECK (label IN (0, 1)),
    chain TEXT NOT NULL);
""" + "".join(f"""
CREATE TRIGGER IF NOT EXISTS {table}_append_only_update BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, 'the shadow log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_append_only_delete BEFORE DELETE ON {table}
    BEGIN SELECT RAISE(ABORT, 'the shadow log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_append_only_replace BEFORE INSERT ON {table}
    WHEN EXISTS (SELECT 1 FROM {table} WHERE {key} = NEW.{key})
    BEGIN SELECT RAISE(ABORT, 'the shadow log is append-only: that {key} is already logged'); END;
""" for table, key in (("predictions", "id"), ("models", "sha256")))
_COLUMNS = "id, utc, model_sha256, input, sop_instance_uid, score, decision, refer, ms, label"


@dataclass(frozen=True)
class LoggedPrediction:
    """One logged prediction; `label` is the radiologist's read (None until one is known)."""

    id: int
    utc: str
    model_sha256: str
    input: str
    sop_instance_uid: str | None
    score: float
    decision: int
    refer: bool
    ms: float
    label: int | None


@dataclass(frozen=True)
class Integrity:
    """What recomputing the hash chain found."""

    status: str
    """"verified", "broken", or "unchained" (a version 1 log, written before the chain)."""
    rows: int
    broken_at: int | None
    """Id of the first row whose `chain` does not match; figures from it on cannot be trusted."""
    head: str | None
    """The last row's `chain`: a copy kept elsewhere shows a rewrite of the whole chain."""
    message: str


@dataclass(frozen=True)
class ShadowLog:
    """A log read back: predictions in the order they were written, and each model's export record."""

    path: Path
    predictions: list[LoggedPrediction]
    models: dict[str, dict[str, Any]]
    """sha256 -> {"export_dir", "file", "io" (its io.json), "first_seen_utc"}."""
    integrity: Integrity


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)  # explicit BEGIN/COMMIT per row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process; WAL keeps commits atomic
    return connection


def _check_version(connection: sqlite3.Connection, path: Path) -> int:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, UNCHAINED_VERSION, SCHEMA_VERSION):
        raise DataError(f"{path}: shadow log schema version {version}; this nas reads version {SCHEMA_VERSION} "
                        "(start a new log with --log, or use the nas that wrote it)")
    return version


def _digest(*values: Any) -> str:
    return hashlib.sha256(json.dumps(values, separators=(",", ":")).encode()).hexdigest()


def _model_digest(record: Sequence[Any]) -> str:
    """Of a `models` row as stored (sha256, export_dir, file, io_json, first_seen_utc)."""
    return _digest(*record)


def _chain(previous: str, model_digest: str, row: Sequence[Any]) -> str:
    """The `chain` of a `predictions` row whose columns _COLUMNS are `row`."""
    return _digest(previous, model_digest, *row)


def _model_record(model_dir: Path) -> tuple[str, str, str]:
    """(digest of the deployed file, its name, io.json text): the model's identity as the clinic ran it."""
    io_path = Path(model_dir) / "io.json"
    if not io_path.exists():
        raise DataError(f"{model_dir}: no io.json; pass the folder `nas export` wrote")
    io = json.loads(io_path.read_text())
    deployed = Path(model_dir) / io["file"]
    if not deployed.exists():
        raise DataError(f"{io_path}: names deployed file {io['file']!r}, which is not in {model_dir}")
    return file_digest(*artifact_files(deployed)), io["file"], json.dumps(io, sort_keys=True)


def _row_values(row: Mapping[str, Any], label: int | None) -> tuple[Any, ...]:
    missing = [k for k in ROW_FIELDS if k not in row]
    if missing:
        raise ValueError(f"prediction row for {row.get('input', '?')!r} lacks {', '.join(missing)} "
                         f"(a row needs {', '.join(ROW_FIELDS)})")
    score, decision = float(row["score"]), int(row["decision"])
    if not 0.0 <= score <= 1.0 or decision not in (0, 1):
        raise ValueError(f"prediction row for {row['input']!r}: score {score} must be in [0, 1] and decision "
                         f"{decision} 0 or 1")
    uid = row.get("sop_instance_uid")
    return (str(row["input"]), str(uid) if uid else None, score, decision, int(bool(row["refer"])),
            float(row["ms"]), label)


def append_predictions(
    log_path: Path, rows: Sequence[Mapping[str, Any]], labels: Mapping[str, int] | None, *, model_dir: Path,
) -> int:
    """Append `rows` (from `nas predict`) to the log at `log_path`, creating it; returns the rows written.

    `labels` maps case keys (see the module docstring) to the radiologist's read, 0 or 1; rows it has no key for
    are logged unlabelled, and a `labels` that matches none of the rows is an error naming a few of each. Each
    row is its own transaction, stamped with the UTC time it was written.
    """
    inputs = [str(r.get("input", "")) for r in rows]
    matched = match_cases(labels, inputs, what="labels") if labels else {}
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sha, file, io_text = _model_record(Path(model_dir))
    values = [_row_values(r, matched.get(key)) for r, key in zip(rows, inputs)]  # validate all before writing any
    connection = _connect(log_path)
    try:
        if _check_version(connection, log_path) == UNCHAINED_VERSION:
            raise DataError(f"{log_path}: a shadow log of schema version {UNCHAINED_VERSION}, written before rows "
                            "were hash-chained; `nas monitor` still reads it, but new predictions go to a new log "
                            "(another --log file)")
        connection.executescript(_SCHEMA)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        now = lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        connection.execute("INSERT INTO models SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS "
                           "(SELECT 1 FROM models WHERE sha256 = ?)",
                           (sha, str(Path(model_dir).resolve()), file, io_text, now(), sha))
        model_digest = _model_digest(connection.execute("SELECT * FROM models WHERE sha256 = ?", (sha,)).fetchone())
        for value in values:
            connection.execute("BEGIN IMMEDIATE")
            last = connection.execute("SELECT id, chain FROM predictions ORDER BY id DESC LIMIT 1").fetchone()
            row = ((last[0] + 1) if last else 1, now(), sha, *value)
            chain = _chain(last[1] if last else GENESIS, model_digest, row)
            connection.execute(f"INSERT INTO predictions ({_COLUMNS}, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (*row, chain))
            connection.execute("COMMIT")
    finally:
        connection.close()
    return len(values)


def read_log(log_path: Path) -> ShadowLog:
    """Every prediction in the log, oldest first. A missing file is an error; an empty log reads as empty."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise DataError(f"shadow log not found: {log_path} (it is written by `nas predict --log {log_path}`)")
    connection = sqlite3.connect(f"{log_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = _check_version(connection, log_path)
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"models", "predictions"} <= tables:
            if tables:
                raise DataError(f"{log_path}: an SQLite file but not a shadow log (tables: {', '.join(sorted(tables))})")
            return ShadowLog(log_path, [], {}, _verify([], {}, chained=True))
        records = connection.execute("SELECT sha256, export_dir, file, io_json, first_seen_utc FROM models").fetchall()
        chain = "chain" if version != UNCHAINED_VERSION else "NULL"
        rows = connection.execute(f"SELECT {_COLUMNS}, {chain} FROM predictions ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{log_path}: cannot be read as a shadow log ({exc})") from None
    finally:
        connection.close()
    try:
        models = {sha: {"export_dir": d, "file": f, "io": json.loads(io), "first_seen_utc": t}
                  for sha, d, f, io, t in records}
    except json.JSONDecodeError as exc:
        raise DataError(f"{log_path}: a model record's io.json is not JSON ({exc})") from None
    integrity = _verify(rows, {r[0]: _model_digest(r) for r in records}, chained=version != UNCHAINED_VERSION)
    return ShadowLog(log_path, [LoggedPrediction(*r[:7], bool(r[7]), *r[8:10]) for r in rows], models, integrity)


def _verify(rows: Sequence[Sequence[Any]], model_digests: Mapping[str, str], *, chained: bool) -> Integrity:
    """Recompute the chain over `rows` (the _COLUMNS, then `chain`) in id order; the first mismatch breaks it."""
    if not chained:
        return Integrity("unchained", len(rows), None, None,
                         f"not verifiable: this log (schema version {UNCHAINED_VERSION}) was written before rows "
                         "were hash-chained, so a row changed by hand cannot be detected")
    previous = GENESIS
    for row in rows:
        if row[-1] != _chain(previous, model_digests.get(row[2], "no model record"), row[:-1]):
            return Integrity("broken", len(rows), row[0], None,
                             f"TAMPERED: the hash chain breaks at row {row[0]} ({row[3]}): that row or its model "
                             "record was changed, or a row before it removed, after it was written; figures from "
                             f"row {row[0]} on cannot be trusted")
        previous = row[-1]
    return Integrity("verified", len(rows), None, previous if rows else None,
                     f"hash chain verified over {len(rows)} row(s)"
                     + (f"; head {previous} (keep a copy to detect a rewrite of the whole log)" if rows else ""))


def read_case_csv(path: Path, column: str) -> dict[str, str]:
    """`input` -> `column` from a CSV file with a header row naming both."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"case file not found: {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "input" not in header or column not in header:
            raise DataError(f"{path}: needs a header with columns 'input' and {column!r}; found: "
                            f"{', '.join(header) or 'nothing'}")
        out: dict[str, str] = {}
        for line, record in enumerate(reader, start=2):
            key, value = (record["input"] or "").strip(), (record[column] or "").strip()
            if not key or not value:
                raise DataError(f"{path}, line {line}: empty 'input' or {column!r}")
            if key in out and out[key] != value:
                raise DataError(f"{path}, line {line}: {key!r} is listed twice, as {out[key]!r} and {value!r}")
            out[key] = value
    if not out:
        raise DataError(f"{path}: no cases after the header")
    return out


def read_labels(path: Path) -> dict[str, int]:
    """The radiologists' reads from a CSV `input,label` (label 1: the positive, abnormal class; 0: normal)."""
    labels = {}
    for key, value in read_case_csv(path, "label").items():
        if value not in ("0", "1"):
            raise DataError(f"{path}: label {value!r} for {key!r} must be 1 (positive, abnormal) or 0 (normal)")
        labels[key] = int(value)
    return labels


def _parts(key: str) -> tuple[str, ...]:
    return PurePosixPath(key.replace("\\", "/")).parts


def match_cases(cases: Mapping[str, Any], inputs: Iterable[str], *, what: str) -> dict[str, Any]:
    """input -> value for each input some case key names (trailing path components equal)."""
    inputs = list(inputs)
    by_name: dict[str, list[str]] = {}
    for item in inputs:
        by_name.setdefault(_parts(item)[-1] if _parts(item) else item, []).append(item)
    matched: dict[str, Any] = {}
    for key, value in cases.items():
        parts = _parts(key)
        hits = [i for i in by_name.get(parts[-1] if parts else key, []) if _parts(i)[-len(parts):] == parts]
        if len(hits) > 1:
            raise DataError(f"{what}: {key!r} matches {len(hits)} inputs ({', '.join(hits[:3])}); give a longer path")
        if hits:
            matched[hits[0]] = value
    if cases and not matched:
        raise DataError(f"{what}: no case matches an input; {what} has e.g. {', '.join(list(cases)[:3])}, the inputs "
                        f"are e.g. {', '.join(inputs[:3]) or 'none'} (keys match by trailing path components)")
    return matched
