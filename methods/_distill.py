"""What the distilling methods share (a private module: not a registered method): the frozen teacher
(:func:`frozen_copy`, used by SCAR, SCRUB and Bad Teacher) and the distillation KL of SCRUB and Bad Teacher:

    KL_T(t ‖ s) = (1/B) Σ_i Σ_k p_ik · (log p_ik − log q_ik),
    p_i = softmax(t_i / T) (teacher),  q_i = softmax(s_i / T) (student),

summed over the classes and averaged over the B rows of the batch (``batchmean``), the direction
knowledge distillation minimises: the teacher's distribution is the target, the student's the model.
In ``torch.nn.functional.kl_div(input, target)`` the *student* log-probabilities are ``input`` and
the *teacher's* are ``target``. The ZRF / Jensen–Shannon helper copied across the Bad Teacher,
SSD and SUPREME codes (``0.5·kl_div(log p, m) + 0.5·kl_div(log q, m)``) passes them the other way
round, so it computes KL(m ‖ p) + KL(m ‖ q) rather than the JS divergence's KL(p ‖ m) + KL(q ‖ m);
nothing here is built on it.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parameter's gradient off: a teacher."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)), summed over classes, mean over rows; 0 for an empty batch.

    Gradients flow into ``student_logits`` only (the teacher's logits are detached).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape")
    if len(student_logits) == 0:
        return student_logits.sum() * 0.0
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
