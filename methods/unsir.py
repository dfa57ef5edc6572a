"""UNSIR (Tarun et al., TNNLS 2023): learn error-maximising noise for each removed class, impair the
model on that noise plus a retain sample, then repair it on the retain sample.

Tarun, Chundawat, Mandal, Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023.
Reference implementations read: ``pedroandreou/supreme-unlearning:
src/supreme/methods/unlearning_methods/unsir.py`` (``UNSIR_noise_train``,
``UNSIR_create_noisy_dataloader``, ``unsir``; its ``fit_one_unlearning_cycle`` is Adam) and
``cspartalis/LoTUS: src/unlearning_methods/unsir_class.py`` (an instance-wise variant: per-batch
noise matched to forget logits, SGD; not the class-removal form followed here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, Split, generator
from bench.registry import method
from bench.train import train_epochs


def noise_objective(logits: torch.Tensor, noise: torch.Tensor, cls: int, reg: float) -> torch.Tensor:
    """L(n) = −CE(f(n), c) + λ · mean_i ‖n_i‖²₂ (minimised: the noise maximises the error on class c
    while its energy is kept small), λ = ``reg``."""
    target = torch.full((len(logits),), cls, dtype=torch.int64, device=logits.device)
    return -F.cross_entropy(logits, target) + reg * noise.pow(2).sum(dim=(1, 2, 3)).mean()


def error_maximising_noise(model: nn.Module, cls: int, shape: tuple[int, ...], *, steps: int, lr: float,
                           reg: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Projected Adam on :func:`noise_objective`: n₀ ~ U[0, 1)^shape, then ``steps`` times
    n ← clip(Adam step on L(n), 0, 1); f frozen in eval mode. Returns n in [0, 1] (float, CPU)."""
    model.eval()
    noise = torch.rand(shape, generator=g).to(device).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=lr)
    for _ in range(steps):
        loss = noise_objective(model(noise), noise, cls, reg)
        (grad,) = torch.autograd.grad(loss, noise)
        noise.grad = grad
        opt.step()
        with torch.no_grad():
            noise.clamp_(0.0, 1.0)
    return noise.detach().cpu()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] → uint8 on the 8-bit grid, round(255·x) (how images enter a Split)."""
    return torch.round(x.clamp(0.0, 1.0) * 255).to(torch.uint8)


@method(
    uses=("retain_fraction",),
    paper="Tarun et al. 2023, 'Fast Yet Effective Machine Unlearning', IEEE TNNLS (UNSIR)",
    version=1,
    tuned={task: {"noise_copies": 4, "retain_fraction": 0.3, "repair_lr": 1e-3}
           for task in ("digits-cnn-class", "digits-cnn-multiclass")},
    bounds={"retain_fraction": (0.0, 1.0), "noise_batch": (1, None), "noise_steps": (1, None), "noise_lr": (0.0, None),
            "noise_reg": (0.0, None), "noise_copies": (1, None), "impair_lr": (0.0, None), "impair_batch": (1, None),
            "repair_lr": (0.0, None), "repair_batch": (1, None)},
    applies_to=("classes",),
)
def unsir(
    model: nn.Module, data: MethodData, *, device: torch.device,
    retain_fraction: float = 0.1, noise_batch: int = 32, noise_steps: int = 25, noise_lr: float = 0.1,
    noise_reg: float = 0.1, noise_copies: int = 80, impair_lr: float = 1e-4, impair_batch: int = 32,
    repair_lr: float = 1e-4, repair_batch: int = 128,
) -> nn.Module:
    """UNSIR: impair on error-maximising noise of the removed classes plus a retain sample, then repair.

    1. **Noise.** For each removed class c ∈ R, a batch n_c of ``noise_batch`` = 32 images minimising
       L(n) = −CE(f_0(n), c) + λ·mean_i ‖n_i‖² (λ = 0.1) with Adam (lr 0.1, 25 steps), f_0 frozen.
    2. **Impair**, one epoch of Adam (lr 1e-4, batch 32) on CE over
       {(n_c, c) repeated ``noise_copies`` = 80 times : c ∈ R} ∪ S_r, S_r the retain sample
       (``retain_fraction`` = 0.1 of every kept class: 500 of CIFAR-10's 5,000 per class, as the reference).
       Fitting noise that maximises the error of class c *to* class c moves the weights along the
       directions that destroy what the model knew of c.
    3. **Repair**, one epoch of Adam (lr 1e-4, batch 128) on CE over S_r.

    Defaults are the supreme-unlearning reference's for full-class removal. Departures: (a) the
    noise lives in the image space [0, 1] — it starts U[0, 1) instead of N(0, 1) and is clipped to
    [0, 1] after every step (projected gradient), then stored on the 8-bit grid like every image, as
    this harness requires of methods that synthesise images (the reference's noise is unbounded and
    enters after normalisation); (b) several removed classes get one noise batch each, all in one
    impair epoch (the reference removes one class; the paper's notebook loops over classes the same
    way). As in the reference, the ``noise_copies`` batches are copies of one learned noise
    tensor (its ``noise()`` returns the same parameter every call).

    **Tuned on digits** (``tuned``): with the defaults, the 2,560 noise images labelled c outweigh
    the ~120-image retain sample (10% of digits' retain set; the reference's CIFAR-10 sample is
    4,500) and the impaired model predicts c for everything — test accuracy 0.004 on
    digits-cnn-class, beyond what one repair epoch can undo. Grid, seed 0, on the VALIDATION split
    only: noise_copies ∈ {1, 4, 16, 80} × retain_fraction ∈ {0.1, 0.3} × repair_lr ∈ {1e-4, 1e-3};
    criterion ½·(accuracy on D_v's kept classes + 1 − accuracy on D_v's removed classes). Best on
    both digits class tasks: retain_fraction 0.3, repair_lr 1e-3 with noise_copies 1 or 4 (tied:
    0.626 on digits-cnn-class, 0.573 on digits-cnn-multiclass); ties go to the value nearer the
    paper's default, 4. Every other task runs the defaults.
    """
    model.to(device)
    retain = data.retain
    shape = (noise_batch, *retain.x.shape[1:])
    g = generator(data.seed, "unsir")
    xs, ys = [], []
    for cls in data.forget_classes:
        noise = to_uint8(error_maximising_noise(model, cls, shape, steps=noise_steps, lr=noise_lr, reg=noise_reg,
                                                g=g, device=device))
        xs.append(noise.repeat(noise_copies, 1, 1, 1))
        ys.append(torch.full((noise_batch * noise_copies,), cls, dtype=torch.int64))
    if not xs:
        raise ValueError("unsir learns noise for the removed classes; this task removes no class (it applies to class removal only)")
    impair = Split("noise+retain_sample", torch.cat([*xs, retain.x]), torch.cat([*ys, retain.y]))
    train_epochs(model, impair, epochs=1, batch_size=impair_batch, lr=impair_lr, seed=data.seed, device=device,
                 purpose="unsir/impair")
    train_epochs(model, retain, epochs=1, batch_size=repair_batch, lr=repair_lr, seed=data.seed, device=device,
                 purpose="unsir/repair")
    return model
