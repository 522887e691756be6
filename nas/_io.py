"""File helpers: atomic writes (a half-written file never looks finished), JSON reads, and content digests."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from nas.errors import StudyError

UMASK = os.umask(0o022)
"""The process's umask, read once at import (reading it means setting it), before any thread starts."""
os.umask(UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` so that `path` holds either its old content or all of the new, even after a power cut: the
    temporary file is flushed to disk before it is renamed. The file follows the umask (mkstemp would make it
    0600), so a results folder shared with a group stays readable to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~UMASK)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file nas wrote, or a StudyError naming it when it is damaged (a truncated copy, a full disk)."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: damaged, not valid JSON ({exc}); restore it, or run `nas search` with the "
                         "study's settings again to rewrite it") from None


def file_digest(*paths: Path) -> str:
    """sha256 of the files' bytes in order (an OpenVINO IR is its .xml and its .bin), first 16 hex digits."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]
