"""FROC and CPM by LUNA16's rules, on a case small enough to work out by hand."""

from __future__ import annotations

import pytest

from nas.tasks.nodule.froc import Candidate, Finding, ScanTruth, froc, match

# Scan A: nodule n1 at the origin (10 mm: radius 5), nodule n2 at x = 50 (6 mm: radius 3), and an excluded finding of
# unknown size at y = 50 (LUNA16 then takes 10 mm, radius 5). Scan B: no nodules.
SCAN_A = ScanTruth("A", (Finding((0.0, 0.0, 0.0), 10.0), Finding((50.0, 0.0, 0.0), 6.0)),
                   (Finding((0.0, 50.0, 0.0), None),))
SCAN_B = ScanTruth("B", ())
FOUND_A = [
    Candidate((1.0, 0.0, 0.0), 0.9),     # hits n1 (1 mm from its centre)
    Candidate((0.0, 2.0, 0.0), 0.8),     # hits n1 again: counts once
    Candidate((0.0, 51.0, 0.0), 0.95),   # inside the excluded finding: neither hit nor false positive
    Candidate((52.0, 0.0, 0.0), 0.3),    # hits n2 (2 mm < 3 mm)
    Candidate((100.0, 100.0, 100.0), 0.7),  # false positive
    Candidate((53.5, 0.0, 0.0), 0.05),   # 3.5 mm from n2 (radius 3): a false positive
]
FOUND_B = [Candidate((0.0, 0.0, 0.0), 0.6), Candidate((9.0, 9.0, 9.0), 0.4), Candidate((5.0, 5.0, 5.0), 0.1)]


def test_matching_follows_luna16_rules():
    best, false_positives = match(SCAN_A, FOUND_A)
    assert best.tolist() == [0.9, 0.3]
    assert sorted(false_positives) == [0.05, 0.7]


def test_hand_worked_froc_and_cpm():
    # n1 found at 0.9, n2 at 0.3; false positives score 0.7, 0.6, 0.4, 0.1, 0.05 over 2 scans. Walking down the
    # thresholds: 0.9 -> (0 FP/scan, sens 1/2); 0.7 -> (0.5, 1/2); 0.6 -> (1, 1/2); 0.4 -> (1.5, 1/2);
    # 0.3 -> (1.5, 1); 0.1 -> (2, 1); 0.05 -> (2.5, 1). Best sensitivity with at most r FPs per scan:
    # r = 1/8, 1/4, 1/2, 1 -> 0.5; r = 2, 4, 8 -> 1.0. CPM = (4 x 0.5 + 3 x 1) / 7 = 5/7.
    result = froc([SCAN_A, SCAN_B], [FOUND_A, FOUND_B])
    assert result.sensitivity_at_fp == {"0.125": 0.5, "0.25": 0.5, "0.5": 0.5, "1": 0.5, "2": 1.0, "4": 1.0, "8": 1.0}
    assert result.cpm == pytest.approx(5 / 7)
    assert (result.nodules, result.scans) == (2, 2)
    assert result.curve[0] == (0.9, 0.0, 0.5)
    assert result.at_threshold(0.3) == (1.0, 1.5)


def test_missed_nodules_and_silent_scans():
    result = froc([SCAN_A, SCAN_B], [[], []])
    assert result.cpm == 0.0 and set(result.sensitivity_at_fp.values()) == {0.0}


def test_sensitivity_needs_reference_nodules():
    with pytest.raises(ValueError, match="no reference nodules"):
        froc([SCAN_B], [FOUND_B])
