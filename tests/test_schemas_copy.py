"""tests/schemas is a copy of ../shared/schemas so the suite runs outside this workspace; keep them equal."""

from conftest import SHARED
from pathlib import Path


def test_schema_copies_match_shared():
    ours = Path(__file__).resolve().parent / "schemas"
    names = sorted(p.name for p in ours.glob("*.json"))
    assert names == ["detect.v1.schema.json", "pareto.v1.schema.json"]
    if (SHARED / "schemas").is_dir():
        for name in names:
            assert (ours / name).read_text() == (SHARED / "schemas" / name).read_text(), name
