"""Ctrl-C and SIGTERM stop a search at a safe point, never in the middle of a storage write.

Python raises KeyboardInterrupt wherever the main thread happens to be, which can be inside a database
transaction that then holds a lock the next write waits on. So the first signal only asks to stop; training
checks between steps and the search loop between phases. A second signal stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP = threading.Event()


class Interrupted(KeyboardInterrupt):
    """Raised at a safe point after a stop was asked for."""


def check() -> None:
    if STOP.is_set():
        raise Interrupted("stop requested (Ctrl-C or SIGTERM)")


@contextmanager
def graceful_stop() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if STOP.is_set():
            raise KeyboardInterrupt
        STOP.set()
        print(f"\n{signal.Signals(signum).name}: stopping at the next safe point (again to stop now)",
              file=sys.stderr)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    STOP.clear()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        STOP.clear()


@contextmanager
def stop_now() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt at once, as Ctrl-C does, for phases that only write whole files (the end of
    a search): stopping anywhere there is safe, and the default action would end the process without a word."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
