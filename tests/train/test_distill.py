"""The distillation loss against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nas.train import distillation_loss

STUDENT = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
TEACHER = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
LABELS = torch.tensor([1, 0])


def softmax(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def by_hand(temperature: float, alpha: float) -> float:
    kl = ce = 0.0
    for s, t, y in zip(STUDENT.tolist(), TEACHER.tolist(), LABELS.tolist()):
        p, q = softmax(t, temperature), softmax(s, temperature)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
        ce -= math.log(softmax(s, 1.0)[y])
    n = len(LABELS)
    return alpha * temperature**2 * kl / n + (1 - alpha) * ce / n


@pytest.mark.parametrize(("temperature", "alpha"), [(2.0, 0.7), (4.0, 0.5), (1.0, 1.0)])
def test_loss_equals_the_hand_computed_value(temperature, alpha):
    got = distillation_loss(STUDENT, TEACHER, LABELS, temperature=temperature, alpha=alpha)
    assert got.item() == pytest.approx(by_hand(temperature, alpha), rel=1e-6)


def test_alpha_zero_is_plain_cross_entropy():
    got = distillation_loss(STUDENT, TEACHER, LABELS, temperature=3.0, alpha=0.0)
    assert got.item() == pytest.approx(F.cross_entropy(STUDENT, LABELS).item())


def test_a_student_equal_to_its_teacher_has_no_soft_loss():
    assert distillation_loss(TEACHER, TEACHER, LABELS, temperature=5.0, alpha=1.0).item() == pytest.approx(0.0, abs=1e-7)
