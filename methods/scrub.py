"""SCRUB: alternate max-steps (away from the original on D_f) and min-steps (towards it on D_r)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, Split, batches, generator, seed_stream
from bench.methods._distill import distill_kl, frozen_copy
from bench.registry import method
from bench.train import make_optimizer

PAPER = "Kurmanji, Triantafillou, Hayes, Triantafillou 2023, 'Towards Unbounded Machine Unlearning', NeurIPS 2023 (SCRUB)"


def scrub_schedule(epochs: int, msteps: int) -> list[tuple[str, ...]]:
    """The passes of each epoch, in order: epoch e (1-based) is ``("max", "min")`` while e ≤ msteps,
    ``("min",)`` after. A "max" pass is one epoch over D_f, a "min" pass one epoch over D_r."""
    return [("max", "min") if e <= msteps else ("min",) for e in range(1, epochs + 1)]


def max_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Max-step loss on a forget batch: −T²·KL_T(f_0 ‖ f) (descending it pushes the KL up)."""
    return -(temperature ** 2) * distill_kl(student_logits, teacher_logits, temperature)


def min_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *,
             temperature: float, alpha: float, gamma: float) -> torch.Tensor:
    """Min-step loss on a retain batch: γ·CE(f(x), y) + α·T²·KL_T(f_0 ‖ f)."""
    kl = (temperature ** 2) * distill_kl(student_logits, teacher_logits, temperature)
    return gamma * F.cross_entropy(student_logits, y) + alpha * kl


def distill_pass(student: nn.Module, teacher: nn.Module, split: Split, opt: torch.optim.Optimizer, kind: str, *,
                 batch_size: int, g: torch.Generator, device: torch.device,
                 temperature: float, alpha: float, gamma: float) -> None:
    """One epoch over ``split``, one optimizer step per shuffled batch, with the ``kind`` loss."""
    for x, y in batches(split, batch_size, device=device, shuffle=True, g=g):
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        if kind == "max":
            loss = max_loss(s, t, temperature)
        else:
            loss = min_loss(s, t, y, temperature=temperature, alpha=alpha, gamma=gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@method(
    uses=("forget", "retain"),
    paper=PAPER,
    version=1,
    bounds={"epochs": (1, None), "msteps": (0, None), "lr": (0.0, None), "momentum": (0.0, 1.0),
            "weight_decay": (0.0, None), "temperature": (1e-6, None), "alpha": (0.0, None), "gamma": (0.0, None),
            "forget_batch_size": (1, None), "retain_batch_size": (1, None)},
)
def scrub(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 3, msteps: int = 2, lr: float = 5e-4, momentum: float = 0.9, weight_decay: float = 5e-4,
    temperature: float = 4.0, alpha: float = 0.001, gamma: float = 0.99,
    forget_batch_size: int = 512, retain_batch_size: int = 256,
) -> nn.Module:
    """SCRUB: alternate max-steps (KL from the original up on D_f) and min-steps (KL down + CE on D_r).

    The student f starts as the original f_0, which stays frozen as the teacher. With
    KL_T(f_0 ‖ f)(x) = Σ_k softmax(f_0(x)/T)_k · log(softmax(f_0(x)/T)_k / softmax(f(x)/T)_k)
    (``bench.methods._distill.distill_kl``, batch mean, scaled by T² as in knowledge distillation):

        max-step on D_f:  min_θ  −T²·E_{x∈D_f} KL_T(f_0 ‖ f)(x)            (push f away from f_0)
        min-step on D_r:  min_θ   γ·E_{(x,y)∈D_r} CE(f(x), y) + α·T²·E_{x∈D_r} KL_T(f_0 ‖ f)(x)

    Algorithm (the paper's Algorithm 1, as its reference code runs it): one SGD optimizer (momentum,
    weight decay) for the whole run; for epoch e = 1..``epochs``: if e ≤ ``msteps``, one pass over
    D_f in shuffled batches of ``forget_batch_size``, one max-step each; then one pass over D_r in
    shuffled batches of ``retain_batch_size``, one min-step each (:func:`scrub_schedule`). The
    student is in train mode, the teacher in eval mode.

    Defaults: the paper's CIFAR-10 (ResNet-18 / All-CNN) setting of the reference notebook
    ``meghdadk/SCRUB: large_scale_unlearning.ipynb`` — SGD lr 5e-4, momentum 0.9, weight decay 5e-4,
    T = 4, α = 0.001, γ = 0.99, msteps = 2, 3 epochs, forget batches of 512, retain batches of 256.
    These are kept on every task although SCRUB is known to be weak on class removal (the paper
    itself tunes it per setting); the leaderboard reports what this schedule does. On the digits
    tasks (|D_f| ≈ 145–290 < 512) the defaults take 2 max-steps in all, and SCRUB leaves the
    original as it is (forget accuracy 1.0). It is weak there, not broken: a validation-split
    probe on ``digits-cnn-class`` seed 0 (accuracy on the validation images of the removed class
    / of the kept classes; the original's 0.93 / 0.98) gave 0.00 / 0.98 with forget and retain
    batches of 16 and 32, and 0.00 / 0.95 with 10 epochs and msteps = 9.

    References read: ``meghdadk/SCRUB`` (``large_scale_unlearning.ipynb``, ``small_scale_unlearning.ipynb``,
    ``thirdparty/repdistiller/helper/loops.py: train_distill``, ``distiller_zoo/KD.py: DistillKL``),
    ``xcadet/deepunlearn: munl/unlearning/scrubv2.py``, ``datasec-lab/Ruli: core/unlearn/scrub.py``.

    Departures from the reference, and why:

    * The reference's step-decay of the learning rate (×0.1 after epochs 3, 5, 9, counted as
      "epoch > 3") never fires within 3 epochs; the rate here is constant, which is what it runs.
      With ``epochs`` > 3 ours stays constant while the reference's would decay.
    * No checkpoint selection: deepunlearn's ``scrubv2`` (from the MIA notebook) keeps the epoch
      whose forget error is closest to the forget-*class* validation error, and SCRUB+R rewinds
      to a checkpoint; both are variants, not the plain SCRUB of Algorithm 1.
    * The distillation KL is ``batchmean``·T² exactly as ``DistillKL`` (sum / batch size · T²);
      ``train_distill``'s unused ``beta`` term (other distillers) is left out.
    """
    if data.forget is None or data.retain is None:
        raise ValueError("scrub needs the forget and the retain set")
    model.to(device).train()
    teacher = frozen_copy(model)
    opt = make_optimizer(model.parameters(), optimizer="sgd", lr=lr, weight_decay=weight_decay, momentum=momentum)
    torch.manual_seed(seed_stream(data.seed, "scrub", "torch"))
    g = generator(data.seed, "scrub", "order")
    hp = dict(temperature=temperature, alpha=alpha, gamma=gamma)
    for passes in scrub_schedule(epochs, msteps):
        for kind in passes:
            split, bs = (data.forget, forget_batch_size) if kind == "max" else (data.retain, retain_batch_size)
            distill_pass(model, teacher, split, opt, kind, batch_size=bs, g=g, device=device, **hp)
    return model
