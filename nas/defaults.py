"""Defaults and choices that `--help` shows, kept apart from the modules that use them.

Building the command line must not import torch, Optuna or ONNX (seconds each): `nas --help` and `nas profiles`
start at once. The modules that act on these values import them from here, so each is still stated once.
"""

from __future__ import annotations

GRACE_PERIOD_S = 60
"""Seconds without a heartbeat before a running trial is failed and retried."""
SAMPLERS = ("nsga2", "tpe", "gp", "random")
STRATEGIES = ("trials", "one-shot")
"""trials: every candidate trains; one-shot: one supernet trains per study and candidates inherit its weights."""
SUPERNET_EPOCHS = 10
MEMBER_EPOCHS = 3
"""One-shot: epochs each front member is fine-tuned as a standalone model before it is reported."""

EXPORT_FORMATS = ("onnx", "int8", "tensorrt")
INT8_MAX_AUC_DROP = 0.01
REFER_RATE = 0.10
"""Fraction of validation cases, the least certain ones, whose score range is sent to a reader by default."""

EVALUATE_MARGIN = 0.05
"""`nas evaluate` flags a group whose sensitivity trails the rest by more than this."""

PICK_RULES = ("auc", "latency", "knee")

DEFAULT_WINDOW = 100
"""`nas monitor`: predictions per window, and the latest ones judged for drift."""
