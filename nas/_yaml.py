"""Finding and loading the declarative YAML files (search spaces, hardware profiles) with precise errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from nas.errors import ConfigError, shown, unknown_name

M = TypeVar("M", bound=BaseModel)

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 1 << 20
"""A space or profile is a few kilobytes; a larger file is refused before it is parsed."""
MAX_NODES = 100_000
"""Values a document may hold once its aliases are expanded: aliases nested ten deep turn 400 bytes into a billion
values, which validating (and printing) would take minutes of CPU and gigabytes of memory."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents whose expanded size is out of proportion to a config file."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded_size(node, {}, set())
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values `node` stands for with every alias expanded (memoised, so a bomb is counted cheaply)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise yaml.YAMLError("an alias refers to the mapping or list that contains it")
    open_.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    size = 1
    for child in children:
        size += _expanded_size(child, sizes, open_)
        if size > MAX_NODES:
            raise yaml.YAMLError(f"its aliases expand to more than {MAX_NODES} values")
    open_.discard(key)
    sizes[key] = size
    return size


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
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: {size} bytes; a configuration file may hold at most {MAX_BYTES}")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
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
        quoted = "" if err["type"] in ("missing", "value_error") or isinstance(got, dict) else f" (got {shown(got)})"
        lines.append(f"{path}: {field}: {msg}{quoted}")
    return "\n".join(dict.fromkeys(lines))
