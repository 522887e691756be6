"""Finding and loading the declarative YAML files (search spaces, hardware profiles) with precise errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from nas.errors import ConfigError, unknown_name

M = TypeVar("M", bound=BaseModel)

REPO_ROOT = Path(__file__).resolve().parent.parent


def search_dirs(dirname: str) -> list[Path]:
    """Where NAME.yaml is looked for: the working directory's folder first, then the one beside the package."""
    dirs = [Path.cwd() / dirname, REPO_ROOT / dirname]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def available(dirname: str) -> dict[str, Path]:
    """name -> file for every YAML in the search folders; earlier folders win."""
    found: dict[str, Path] = {}
    for d in search_dirs(dirname):
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def find(kind: str, name_or_path: str, dirname: str) -> Path:
    """A name from the search folders, or a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{kind} file not found: {candidate}")
        return candidate
    options = available(dirname)
    if name_or_path not in options:
        raise ConfigError(unknown_name(kind, name_or_path, options))
    return options[name_or_path]


def load_model(model: type[M], path: Path) -> M:
    """Parse and validate a YAML file; every error names the file, the field, the value and the rule."""
    raw = read_mapping(path)
    try:
        return model.model_validate(raw, context={"path": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None


def read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        # "range"/"fixed" are the tags of a parameter's union, not fields the user wrote
        field = ".".join(str(p) for p in err["loc"] if p not in ("range", "fixed")) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "value_error") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{path}: {field}: {msg}{shown}")
    return "\n".join(dict.fromkeys(lines))
