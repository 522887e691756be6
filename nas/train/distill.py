"""Knowledge distillation: the soft-target loss of Hinton et al. (2015), "Distilling the Knowledge in a Neural
Network", mixing the teacher's temperature-softened outputs with the labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy(student, labels).

    T^2 keeps the soft-target gradients the same size whatever the temperature; the KL is averaged per sample.
    """
    soft_student = F.log_softmax(student_logits / temperature, dim=1)
    soft_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)
