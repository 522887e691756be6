"""One exception root, so the CLI can turn any expected failure into a one-line message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["NasError", "ConfigError", "DataError", "StudyError", "TrialError", "did_you_mean", "shown",
           "unknown_name"]

SHOWN_CHARS = 80
"""How much of a bad value a message quotes."""


class NasError(Exception):
    """An expected failure with a message meant for the user (no traceback needed)."""

    exit_code = 2


class ConfigError(NasError):
    """A search space, hardware profile or option that cannot be used as given."""


class DataError(NasError):
    """Input data that is missing, malformed or unsuitable for the task."""


class StudyError(NasError):
    """A study that does not exist, or cannot be resumed with the settings given."""


class TrialError(NasError):
    """One trial could not finish; the study records it as failed and goes on."""

    exit_code = 1


def did_you_mean(value: object, options: Iterable[object]) -> str:
    """A ' (did you mean X?)' suffix naming the closest option, or '' when none is close."""
    by_lower = {str(o).lower(): str(o) for o in options}
    close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def unknown_name(kind: str, value: object, options: Iterable[object]) -> str:
    """The standard message for a name that is not registered: the value, the valid names, the closest."""
    names = sorted(str(o) for o in options)
    return f"unknown {kind} {value!r}{did_you_mean(value, names)}; valid: {', '.join(names)}"


def shown(value: object) -> str:
    """`repr(value)` cut to SHOWN_CHARS, so a message quoting hostile input (a YAML alias bomb) stays one short line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"
