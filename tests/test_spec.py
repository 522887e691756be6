"""A spec's one-line summary, as trial lines, tables and cards print it."""

from __future__ import annotations

from nas.spec import Spec, TrainingSpec


def test_summary_rounds_floats_and_keeps_other_values():
    spec = Spec(family="dsconv", arch={"dropout": 0.09123006644330972, "width": 16}, input_size=28, in_channels=1,
                num_classes=2, training=TrainingSpec(lr=0.01, weight_decay=0.0, epochs=1, augment=0.0))
    summary = spec.summary()
    assert "dropout=0.0912" in summary and "0.09123006" not in summary and "width=16" in summary
