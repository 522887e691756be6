"""`nas tasks` lists every registered task, one line each (text) or one JSON document."""

from __future__ import annotations

import json

from conftest import REPO, run_nas

from nas.tasks import list_tasks


def test_tasks_lists_every_registered_task():
    done = run_nas("tasks", cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list_tasks() and {"xray", "nodule"} <= set(list_tasks())
    listed = json.loads(run_nas("tasks", "--json", cwd=REPO).stdout)
    assert {t["name"]: t["objectives"] for t in listed}["nodule"] == ["cpm", "latency_p95"]
