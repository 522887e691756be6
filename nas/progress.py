"""Progress inside a trial: its phase (measuring / training epoch k of n / scoring), a ticking clock and an ETA.

A trial can take many minutes, so a bar that moves only when one ends looks hung. The search loop opens one
`StudyProgress`; the trial path and the training loop report through the module-level `phase` and `epoch`
hooks, which do nothing when no search is running (an export, a test). In a terminal the bar's text is
redrawn every second; without one (logs, `--no-progress`) each phase is one line. Everything goes to stderr,
so `--json` keeps stdout to its one document.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

PHASES: dict[str, tuple[float, float]] = {
    "measuring": (0.0, 0.05), "training": (0.05, 0.85), "fine-tuning": (0.85, 0.9), "scoring": (0.9, 1.0),
}
"""The share of a trial done when each phase starts and ends (epochs move within it): rough, for the ETA only."""
TICK_S = 1.0
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

_current: StudyProgress | None = None


def clock(seconds: float) -> str:
    """`4m05s`, `1h12m`; `?` for NaN (nothing to extrapolate from yet)."""
    if seconds != seconds:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


class StudyProgress:
    """The study's bar (terminal) or log lines (no terminal), fed by the trial's phases and epochs."""

    def __init__(self, *, total: int, done: int, desc: str, terminal: bool, file: TextIO | None = None,
                 stop_at: float | None = None) -> None:
        self.total, self.done, self.terminal = total, min(done, total), terminal
        self.stop_at = stop_at
        """--timeout, as a time.monotonic(): no trial starts after it, so the ETA never runs past it and a trial."""
        self.file = file or sys.stderr
        self.bar = tqdm(total=total, initial=self.done, desc=desc, unit="trial", file=self.file,
                        disable=not terminal, dynamic_ncols=True, bar_format=BAR_FORMAT)
        self.started = time.monotonic()
        self.spent = 0  # trials this process finished: the ETA's rate
        self.trial = ""
        self.note = ""
        self.trial_started = self.started
        self.phase, self.fraction = "", 0.0
        self._span, self._label = (0.0, 0.0), ""  # the current phase (or stage): its share of the trial, its name
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> StudyProgress:
        global _current
        _current = self
        if self.terminal:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        global _current
        _current = None
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.bar.close()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self.bar.set_postfix_str(self.status(), refresh=True)

    def start_trial(self, label: str, note: str = "") -> None:
        self.trial, self.note, self.trial_started = label, note, time.monotonic()
        self.phase, self.fraction, self._span, self._label = "starting", 0.0, (0.0, 0.0), ""
        self.bar.set_postfix_str(self.status())

    def set_phase(self, name: str, stage: str = "", part: int = 1, parts: int = 1) -> None:
        """Enter phase `name` (a key of PHASES); for a trial of several models, its `part`-th of `parts` slices,
        training `stage`."""
        low, high = PHASES.get(name, (self.fraction, self.fraction))
        width = (high - low) / parts
        self._span = (low + width * (part - 1), low + width * part)
        self._label = f"{name} {stage}".strip()
        self._show(self._label, self._span[0])

    def set_epoch(self, k: int, n: int) -> None:
        """Epoch k of n of the current phase starts."""
        low, high = self._span
        self._show(f"{self._label} epoch {k} of {n}", low + (high - low) * (k - 1) / n)

    def _show(self, phase: str, fraction: float) -> None:
        # Never backwards within a trial: a stage's second pass (hard-negative mining) restarts its epochs, and
        # a falling share would inflate the rate the ETA extrapolates.
        self.phase, self.fraction = phase, max(self.fraction, fraction)
        if self.terminal:
            self.bar.set_postfix_str(self.status())
        else:
            tqdm.write(f"  {self.status()}", file=self.file)

    def end_trial(self, done: int, note: str = "") -> None:
        """The study now holds `done` spent trials; without a terminal, say where the study stands."""
        self.spent += max(done - self.done, 0)
        self.done, self.note, self.trial, self.fraction = min(done, self.total), note, "", 0.0
        self.bar.update(self.done - self.bar.n)
        if not self.terminal:
            tqdm.write(f"  [{self.done}/{self.total} trials, {clock(time.monotonic() - self.started)} elapsed, "
                       f"~{clock(self.eta())} left" + (f", {note}]" if note else "]"), file=self.file)

    def eta(self) -> float:
        """Seconds left: this process's time per trial (the running one counted by its phase) times what is left."""
        work = self.spent + self.fraction
        if work < 0.01:
            return float("nan")
        now = time.monotonic()
        per_trial = (now - self.started) / work
        left = per_trial * max(self.total - self.done - self.fraction, 0.0)
        if self.stop_at is not None:
            left = min(left, max(self.stop_at - now, 0.0) + per_trial * (1.0 - self.fraction))
        return left

    def status(self) -> str:
        parts = [f"{self.trial}: {self.phase} ({clock(time.monotonic() - self.trial_started)})"] if self.trial else []
        return ", ".join([*parts, f"ETA {clock(self.eta())}", *([self.note] if self.note else [])])


def phase(name: str, stage: str = "", part: int = 1, parts: int = 1) -> None:
    """Hook for the trial path: it enters a phase of PHASES (for a pipeline of several models, training its
    `part`-th of `parts`, `stage`)."""
    if _current is not None:
        _current.set_phase(name, stage, part, parts)


def epoch(k: int, n: int) -> None:
    """Hook for the training loop: epoch `k` of `n` of the current phase (training, fine-tuning) starts."""
    if _current is not None:
        _current.set_epoch(k, n)
