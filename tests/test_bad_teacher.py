"""Bad Teacher's own formulas: which teacher each row is distilled towards, and the loss value."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods.bad_teacher import bad_teacher_loss, teacher_targets

STUDENT = np.array([[0.5, 1.0, -0.5], [2.0, 0.0, 0.0], [0.0, 0.0, 1.5], [1.0, -1.0, 0.0]])
GOOD = np.array([[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 6.0], [3.0, 1.0, 0.0]])
BAD = np.array([[0.1, 0.0, -0.1], [0.0, 0.2, 0.1], [-0.3, 0.0, 0.0], [0.0, 0.0, 0.0]])
IS_FORGET = np.array([1, 0, 0, 1])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_forget_rows_take_the_incompetent_teacher_and_retain_rows_the_original() -> None:
    got = teacher_targets(torch.tensor(GOOD), torch.tensor(BAD), torch.tensor(IS_FORGET))
    expected = np.stack([BAD[0], GOOD[1], GOOD[2], BAD[3]])
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_loss_is_mean_kl_from_the_row_teacher_to_the_student(temperature: float) -> None:
    target = np.where(IS_FORGET[:, None] == 1, softmax(BAD / temperature), softmax(GOOD / temperature))
    q = softmax(STUDENT / temperature)
    expected = (target * (np.log(target) - np.log(q))).sum(1).mean()
    got = bad_teacher_loss(torch.tensor(STUDENT), torch.tensor(GOOD), torch.tensor(BAD),
                           torch.tensor(IS_FORGET), temperature)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_loss_vanishes_when_the_student_copies_the_row_teachers() -> None:
    student = np.where(IS_FORGET[:, None] == 1, BAD, GOOD)
    got = bad_teacher_loss(torch.tensor(student), torch.tensor(GOOD), torch.tensor(BAD), torch.tensor(IS_FORGET), 1.0)
    assert float(got) == pytest.approx(0.0, abs=1e-12)
    # ... and not when it copies the original everywhere (the forget rows then differ).
    got = bad_teacher_loss(torch.tensor(GOOD), torch.tensor(GOOD), torch.tensor(BAD), torch.tensor(IS_FORGET), 1.0)
    assert float(got) > 0.1


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_reference_loss_is_ours_divided_by_the_number_of_classes(temperature: float) -> None:
    """The reference ``UnlearnerLoss`` averages ``kl_div`` over rows × classes (fixtures README);
    ours is the batch-mean KL, so the two differ by exactly the number of classes."""
    gold = np.load(Path(__file__).parent / "fixtures" / "bad_teacher_golden.npz")
    s, good, bad = (torch.from_numpy(gold[k]) for k in ("logits_student", "logits_good", "logits_bad"))
    ours = bad_teacher_loss(s, good, bad, torch.from_numpy(gold["forget_flags"]), temperature)
    assert float(ours) / s.shape[1] == pytest.approx(float(gold[f"bt_unlearner_loss_T{temperature:g}"]), rel=1e-10)
