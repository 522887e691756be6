"""Start-up: the parser and the light verbs load no heavy library, and `--help` states every default."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, run_nas

HEAVY = ("torch", "torch_pruning", "timm", "optuna", "onnx", "onnxruntime", "openvino", "scipy", "sqlalchemy", "plotly",
         "monai", "SimpleITK")

PROBE = """
import json, sys
from nas.cli.main import build_parser, main
build_parser()
after_parser = sorted(m for m in {heavy} if m in sys.modules)
main(["profiles", "--json"])
after_profiles = sorted(m for m in {heavy} if m in sys.modules)
main(["spaces", "--json"])
after_spaces = sorted(m for m in {heavy} if m in sys.modules)
main(["tasks", "--json"])
after_tasks = sorted(m for m in {heavy} if m in sys.modules)
print(json.dumps({{"parser": after_parser, "profiles": after_profiles, "spaces": after_spaces, "tasks": after_tasks}}),
      file=sys.stderr)
"""


def test_parser_and_listing_verbs_import_no_heavy_library() -> None:
    """Deterministic on any machine: what is imported decides start-up time, not today's load."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=True)
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert loaded == {"parser": [], "profiles": [], "spaces": [], "tasks": []}
    decoder, out = json.JSONDecoder(), done.stdout.strip()
    profiles, end = decoder.raw_decode(out)
    spaces, end2 = decoder.raw_decode(out[end:].lstrip())
    tasks = json.loads(out[end:].lstrip()[end2:])
    assert any(p["name"] == "cpu" for p in profiles)
    assert {"name": "xray", "task": "xray"}.items() <= next(s for s in spaces if s["name"] == "xray").items()
    assert {t["name"]: t["objectives"][0] for t in tasks} == {"xray": "auc", "nodule": "cpm", "nodule-malignancy": "auc"}


def _seconds(*argv: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, check=True, timeout=300)
    return time.perf_counter() - start


def test_help_and_listing_verbs_start_faster_than_torch_imports() -> None:
    """Timed against `import torch` under the same load, so a busy CI machine slows both sides alike."""
    torch_s = _seconds("-c", "import torch")
    for argv in (("--help",), ("--version",), ("profiles",), ("spaces",), ("tasks",)):
        took = _seconds("-m", "nas.cli.main", *argv)
        assert took < 0.6 * torch_s, f"nas {' '.join(argv)} took {took:.1f} s, `import torch` {torch_s:.1f} s"


def test_every_help_states_its_defaults(tmp_path: Path) -> None:
    search = run_nas("search", "--help", cwd=tmp_path)
    assert search.returncode == 0
    text = " ".join(search.stdout.split())
    for shown in ("profiles`) (default: cpu)", "start-up trials (default: 10)", "no new trial is started (default: none)",
                  "failed and retried (default 60)"):
        assert shown in text
    worker = " ".join(run_nas("worker", "--help", cwd=tmp_path).stdout.split())
    assert "--study STUDY the study to join" in worker
    assert "this worker starts no new trial (default: none)" in worker
