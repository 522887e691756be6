"""`nas search --workers K`: K local `nas worker` processes on one study, then one final report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nas.hardware.onnxruntime_cpu import available_threads
from nas.search.runner import SearchConfig


def run_local_workers(config: SearchConfig, storage: str, study: str, count: int) -> list[int]:
    """Start `count` workers on the study and wait for them; returns their exit codes.

    Each is a separate process, as a worker on another machine would be, so the local case tests the
    distributed one. Ctrl-C reaches the whole process group, so every worker stops its trial cleanly.
    """
    threads = max(1, available_threads() // count)  # K workers each using every core would oversubscribe them
    command = [sys.executable, "-m", "nas.cli.main", "worker", "--study", study, "--storage", storage,
               "--results", str(Path(config.results).resolve()), "--grace-period", str(config.grace_period),
               "--threads", str(threads)]
    if config.data:
        command += ["--data", str(Path(config.data).resolve())]
    if config.timeout is not None:
        command += ["--timeout", str(config.timeout)]
    workers = [subprocess.Popen([*command, "--worker-id", str(i + 1)]) for i in range(count)]
    try:
        return [w.wait() for w in workers]
    except KeyboardInterrupt:
        return [w.wait() for w in workers]
