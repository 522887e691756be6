"""What each search space declares about itself, read without validating it.

Listing spaces must not wait for torch: a space is validated (its families against the model registry) when a
search or `nas search --space` loads it, with errors that name the file and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nas import _yaml


@dataclass(frozen=True)
class SpaceSummary:
    name: str
    task: str
    families: tuple[str, ...]
    baselines: tuple[str, ...]
    description: str
    path: Path


def summarise(path: Path) -> SpaceSummary:
    raw = _yaml.read_mapping(path)
    families = raw.get("families")
    baselines = raw.get("baselines")
    return SpaceSummary(
        name=str(raw.get("name", path.stem)), task=str(raw.get("task", "?")),
        families=tuple(map(str, families)) if isinstance(families, dict) else (),
        baselines=tuple(str(b.get("name", "?")) for b in baselines if isinstance(b, dict))
        if isinstance(baselines, list) else (),
        description=str(raw.get("description", "")), path=path)


def list_space_summaries() -> list[SpaceSummary]:
    """Every space in the search folders (the working directory's search_spaces/ first), by file name."""
    return [summarise(path) for path in _yaml.available("search_spaces").values()]
