"""Hypervolume on hand-computed cases, and against inclusion-exclusion (a slow formula that is plainly right)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from nas.search.hypervolume import hypervolume, hypervolume_history


def inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Union of the boxes [p, ref], all minimised: sum over subsets of (-1)^(k+1) * volume of their intersection."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in combinations(points, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


def test_staircase_in_two_dimensions():
    # boxes [1,4]x[3,4], [2,4]x[2,4], [3,4]x[1,4]: 3 + 2 + 1 new unit squares
    assert hypervolume([(1, 3), (2, 2), (3, 1)], ["minimize", "minimize"], (4, 4)) == pytest.approx(6.0)


def test_auc_against_latency_counts_directions():
    # (AUC 0.9, 2 ms) and (AUC 0.8, 1 ms), reference (AUC 0.5, 3 ms): areas 0.4 and 0.6 overlapping by 0.3
    assert hypervolume([(0.9, 2.0), (0.8, 1.0)], ["maximize", "minimize"], (0.5, 3.0)) == pytest.approx(0.7)


def test_dominated_repeated_and_out_of_box_points_add_nothing():
    base = hypervolume([(1, 3), (3, 1)], ["minimize"] * 2, (4, 4))
    more = [(1, 3), (3, 1), (3, 3), (1, 3), (5, 0), (0, 4)]  # dominated, a repeat, beyond and on the reference
    assert hypervolume(more, ["minimize"] * 2, (4, 4)) == pytest.approx(base) == pytest.approx(5.0)
    assert hypervolume([], ["minimize"] * 2, (4, 4)) == 0.0


def test_three_dimensions_by_hand():
    ref = (2, 2, 2)
    assert hypervolume([(1, 1, 1)], ["minimize"] * 3, ref) == pytest.approx(1.0)
    # two 2x1x1 boxes sharing the unit cube [1,2]^3
    assert hypervolume([(0, 1, 1), (1, 0, 1)], ["minimize"] * 3, ref) == pytest.approx(3.0)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_matches_inclusion_exclusion_on_random_sets(dims):
    rng = np.random.default_rng(dims)
    for _ in range(5):
        points, ref = rng.random((7, dims)), np.full(dims, 1.05)
        assert hypervolume(points.tolist(), ["minimize"] * dims, ref.tolist()) == pytest.approx(
            inclusion_exclusion(points, ref), rel=1e-12)


def test_history_grows_only_when_the_front_improves():
    # scaled to [0, 1] each, reference 1.1: one box of 1.1 x 0.1, then a second crossing it in a 0.1 x 0.1 square
    history = hypervolume_history([(0, 1), (0.5, 1.0), (1, 0)], ["minimize", "minimize"])
    assert history == pytest.approx([0.11 / 1.21, 0.11 / 1.21, 0.21 / 1.21])
    assert hypervolume_history([], ["minimize"]) == []


def test_history_is_monotone_and_ends_at_the_whole_set():
    rng = np.random.default_rng(0)
    values = rng.random((40, 3)).tolist()
    history = hypervolume_history(values, ["maximize", "minimize", "minimize"])
    assert all(b >= a for a, b in zip(history, history[1:])) and 0 < history[0] <= history[-1] <= 1
    scaled = np.array(values) * [-1, 1, 1]
    scaled = (scaled - scaled.min(axis=0)) / (scaled.max(axis=0) - scaled.min(axis=0))
    assert history[-1] == pytest.approx(hypervolume(scaled.tolist(), ["minimize"] * 3, [1.1] * 3) / 1.1 ** 3)
