"""SCRUB's own formulas: the step schedule, the shared distillation KL, and the two losses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods import scrub as scrub_module
from bench.methods._distill import distill_kl
from bench.methods.scrub import max_loss, min_loss, scrub_schedule

STUDENT = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
TEACHER = np.array([[1.0, 1.0, 0.0], [-2.0, 0.5, 2.5]])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(1)


def test_schedule_max_steps_first_then_min_only() -> None:
    assert scrub_schedule(3, 2) == [("max", "min"), ("max", "min"), ("min",)]
    assert scrub_schedule(2, 0) == [("min",), ("min",)]
    assert scrub_schedule(2, 5) == [("max", "min"), ("max", "min")]
    assert scrub_schedule(4, 1) == [("max", "min"), ("min",), ("min",), ("min",)]


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distill_kl_is_teacher_to_student_batchmean(temperature: float) -> None:
    p, q = softmax(TEACHER / temperature), softmax(STUDENT / temperature)
    expected = kl_rows(p, q).mean()
    got = distill_kl(torch.tensor(STUDENT), torch.tensor(TEACHER), temperature)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    # The other direction differs on these logits: the argument order is tested, not just symmetry.
    assert abs(kl_rows(q, p).mean() - expected) > 1e-3


def test_distill_kl_zero_at_teacher_and_no_teacher_gradient() -> None:
    t = torch.tensor(TEACHER, requires_grad=True)
    s = torch.tensor(TEACHER.copy(), requires_grad=True)
    loss = distill_kl(s, t, 2.0)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12)
    assert t.grad is None


def test_max_and_min_losses() -> None:
    T, alpha, gamma = 4.0, 0.3, 0.7
    y = np.array([0, 2])
    kl = kl_rows(softmax(TEACHER / T), softmax(STUDENT / T)).mean()
    ce = -np.log(softmax(STUDENT)[np.arange(2), y]).mean()
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    assert float(max_loss(s, t, T)) == pytest.approx(-T * T * kl, rel=1e-10)
    got = min_loss(s, t, torch.tensor(y), temperature=T, alpha=alpha, gamma=gamma)
    assert float(got) == pytest.approx(gamma * ce + alpha * T * T * kl, rel=1e-10)


def test_max_passes_run_on_forget_and_min_passes_on_retain(monkeypatch, synthetic_task) -> None:
    from bench.data import method_view
    from bench.splits import build_task_data
    from bench.references import model_factory

    td = build_task_data(synthetic_task, 0)
    data = method_view(td, ("forget", "retain"), model_factory(td))
    calls: list[tuple[str, str, int]] = []

    def record(student, teacher, split, opt, kind, *, batch_size, **_):
        calls.append((kind, split.name, batch_size))

    monkeypatch.setattr(scrub_module, "distill_pass", record)
    scrub_module.scrub(model_factory(td)(), data, device=torch.device("cpu"), epochs=3, msteps=2,
                       forget_batch_size=7, retain_batch_size=5)
    f, r = td.forget.name, td.retain.name
    assert f != r
    assert calls == [("max", f, 7), ("min", r, 5), ("max", f, 7), ("min", r, 5), ("min", r, 5)]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_terms_match_the_reference_distillkl(temperature: float) -> None:
    """T²·KL_T equals the reference ``DistillKL(T)`` on fixed logits (fixtures README)."""
    gold = np.load(Path(__file__).parent / "fixtures" / "scrub_golden.npz")
    s, t = torch.from_numpy(gold["logits_student"]), torch.from_numpy(gold["logits_good"])
    expected = float(gold[f"scrub_distillkl_T{temperature:g}"])
    assert float(-max_loss(s, t, temperature)) == pytest.approx(expected, rel=1e-10)
