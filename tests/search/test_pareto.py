"""Pareto maths on hand-made points whose front is known."""

import numpy as np

from nas.search.pareto import knee, non_dominated

MAX_MIN = ["maximize", "minimize"]


def test_front_of_a_hand_made_set():
    # (AUC, latency ms): b dominates a; c and d trade off; e duplicates d; f is dominated by c
    points = {"a": (0.90, 2.0), "b": (0.92, 1.0), "c": (0.95, 3.0), "d": (0.85, 0.5), "e": (0.85, 0.5), "f": (0.94, 3.5)}
    mask = non_dominated(list(points.values()), MAX_MIN)
    assert [k for k, on in zip(points, mask) if on] == ["b", "c", "d", "e"]


def test_directions_matter():
    points = [(1.0, 1.0), (2.0, 2.0)]
    assert non_dominated(points, ["minimize", "minimize"]) == [True, False]
    assert non_dominated(points, ["maximize", "maximize"]) == [False, True]
    assert non_dominated(points, MAX_MIN) == [True, True]


def test_front_members_are_mutually_non_dominated_on_random_sets():
    rng = np.random.default_rng(0)
    pts = rng.random((200, 3))
    mask = non_dominated(pts.tolist(), ["minimize"] * 3)
    front = pts[mask]
    for p in front:
        assert not any(np.all(q <= p) and np.any(q < p) for q in pts)
    for p in pts[~np.array(mask)]:
        assert any(np.all(q <= p) and np.any(q < p) for q in front)


def test_knee_is_the_balanced_point():
    points = [(0.99, 10.0), (0.97, 1.0), (0.80, 0.9)]
    assert knee(points, MAX_MIN) == 1
