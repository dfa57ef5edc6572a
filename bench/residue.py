"""Residue of a removed class: what a model that no longer predicts a class still knows of it.

Two per-run metrics of class tasks (``specs/metrics.md``; goal: the oracle's value, which never
saw the class), computed from the returned model itself rather than from its logits:

* **probe_accuracy** — a linear probe on the model's penultimate features g(x)
  (:func:`bench.models.feature_head`). A multinomial logistic regression (scikit-learn,
  ``lbfgs``, C = 1, features standardised on the fitting images) is fitted on the validation
  images D_v of *all* classes and scored on the removed classes' test images D_ft:

      probe_accuracy = (1/|D_ft|) Σ_{(x, y) ∈ D_ft} 1[argmax_k probe_k(g(x)) = y]

  A method that only rewires the head h keeps features that still separate the removed classes:
  its probe stays near the original's.

* **relearn_steps** — how fast the class comes back. A copy of the model is fine-tuned on a fixed
  sample D_s of :data:`RELEARN_IMAGES` forget images (the same for every method of a seed: seed
  stream ``"relearn"`` of the task's split seed), full batch, with the task recipe's optimiser and
  learning rate (no schedule, no augmentation, no weight decay), and after every step its top-1
  accuracy on D_ft is measured:

      relearn_steps = min{t ≥ 0 : acc_{D_ft}(θ_t) ≥ 0.5},   capped at :data:`RELEARN_CAP`

  (0 when the model already recognises the class; the cap means "at least the cap"). A
  forgetting that only hid the class relearns in a few steps; the oracle's count is the target.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.data import Split, batches, generator
from bench.models import feature_head
from bench.tasks import Recipe
from bench.train import make_optimizer, predict_logits, train_step

RELEARN_IMAGES = 32  #: forget images the relearning copy is fine-tuned on
RELEARN_CAP = 100  #: the most steps :func:`relearn_steps` takes
RELEARN_TARGET = 0.5  #: the D_ft accuracy that counts as relearned
PROBE_C = 1.0
PROBE_MAX_ITER = 2000


@dataclass(frozen=True, eq=False)
class ResidueInputs:
    """What the residue metrics of one model need (class tasks): the model (never changed: the
    relearning copy is a deep copy), D_v, D_ft, the fixed relearning sample D_s and the recipe."""

    model: nn.Module
    val: Split
    forget_test: Split
    relearn: Split
    recipe: Recipe
    device: torch.device


def relearn_sample(forget: Split, split_seed: int, size: int = RELEARN_IMAGES) -> Split:
    """D_s: ``size`` forget images (all when fewer) drawn by the seed stream ``"relearn"``."""
    if len(forget) <= size:
        return forget
    pick = torch.randperm(len(forget), generator=generator(split_seed, "relearn"))[:size]
    return forget.subset(torch.sort(pick).values, "relearn")


def features(model: nn.Module, split: Split, device: torch.device) -> np.ndarray:
    """g(x) for every image of ``split`` (eval mode, no gradients), float64 on the CPU."""
    g, _ = feature_head(model)
    model.to(device).eval()
    out = []
    with torch.no_grad():
        for x, _ in batches(split, 256, device=device):
            out.append(g(x).flatten(1).double().cpu())
    return torch.cat(out).numpy()


def probe_accuracy(inputs: ResidueInputs) -> tuple[float, int]:
    """See the module docstring; ``(value, |D_ft|)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit_x = features(inputs.model, inputs.val, inputs.device)
    test_x = features(inputs.model, inputs.forget_test, inputs.device)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER))
    probe.fit(fit_x, inputs.val.y.numpy())
    return float(np.mean(probe.predict(test_x) == inputs.forget_test.y.numpy())), len(inputs.forget_test)


def relearn_steps(inputs: ResidueInputs) -> tuple[float, int]:
    """See the module docstring; ``(steps, |D_s|)``."""
    model = copy.deepcopy(inputs.model).to(inputs.device)
    recipe = inputs.recipe
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr, momentum=recipe.momentum)
    ((x, y),) = list(batches(inputs.relearn, len(inputs.relearn), device=inputs.device))

    def recognised() -> bool:
        logits = predict_logits(model, inputs.forget_test, device=inputs.device)
        return float((logits.argmax(1) == inputs.forget_test.y).double().mean()) >= RELEARN_TARGET

    for step in range(RELEARN_CAP):
        if recognised():
            return float(step), len(inputs.relearn)
        model.train()
        train_step(model, opt, x, y)
    return float(RELEARN_CAP), len(inputs.relearn)  # relearned at the cap or later: "at least the cap"
