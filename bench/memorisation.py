"""Memorisation scores and the memorisation-stratified forget sets (``bench memorisation``).

Feldman & Zhang (NeurIPS 2020), "What neural networks memorize and why", estimate how much a
training image x_i (label y_i) is memorised as

    mem(i) = P[h_S(x_i) = y_i | i ∈ S] − P[h_S(x_i) = y_i | i ∉ S],

the probability over training sets S (and training randomness) that a model trained on S gets the
image right when it trained on it, minus when it did not. We estimate it from K models, model k
trained with the task's recipe on a random half S_k of the task's training pool (exactly ⌊n/2⌋
images, seed stream ``("memorisation", k)`` of the task's split seed; initial weights from
``seed_stream(k, "memorisation-init")``): with c_ki = 1 when model k classifies image i correctly,

    mem(i) ≈ mean_{k: i ∈ S_k} c_ki − mean_{k: i ∉ S_k} c_ki.

(The paper uses 2,000-4,000 models on CIFAR-100 with 70 % subsets; K in the tens gives each image
about K/2 models on each side, enough to rank the tails, not to pin a single score.)

The two forget sets made from the scores (RUM, Zhao et al. NeurIPS 2024; worst-case sets, Fan et
al. 2024):

* ``high``: the ``size`` images of highest score (ties in a seeded random order, stream
  ``"memorisation-ties"``): what only memorisation gets right — where an oracle that never saw them
  fails and forgetting is measurable.
* ``low``: ``size`` images drawn at random (stream ``"memorisation-low"``) from those every model got
  right, trained on them or not (score exactly 0): images the model needs no memory of. The designed
  negative control: the ideal unlearning changes nothing on them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch

from bench.data import TaskData, generator, seed_stream
from bench.models import build_model
from bench.references import dataset_facts
from bench.train import predict_logits, train_with_recipe

Stratum = Literal["high", "low"]


@dataclass(frozen=True, eq=False)
class MemorisationScores:
    """Per pool image (in ``index`` order: dataset training indices, ascending): the score and its
    two terms, and how many models had it in and out of their half."""

    index: torch.Tensor
    score: torch.Tensor
    in_accuracy: torch.Tensor
    out_accuracy: torch.Tensor
    n_in: torch.Tensor
    n_out: torch.Tensor
    models: int
    seconds: float


def half_masks(n: int, models: int, seed: int) -> torch.Tensor:
    """[models, n] bool: row k marks a uniformly random ⌊n/2⌋ of the n pool images."""
    masks = torch.zeros(models, n, dtype=torch.bool)
    for k in range(models):
        masks[k, torch.randperm(n, generator=generator(seed, "memorisation", str(k)))[: n // 2]] = True
    return masks


def scores_from_correct(correct: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(score, in_accuracy, out_accuracy, n_in, n_out) from [K, n] correctness and half masks."""
    n_in, n_out = masks.sum(0), (~masks).sum(0)
    if int(n_in.min()) == 0 or int(n_out.min()) == 0:
        raise ValueError(f"with {masks.shape[0]} models some images are never in (or never out of) a model's half; "
                         "raise --models")
    c = correct.double()
    in_acc = (c * masks).sum(0) / n_in
    out_acc = (c * ~masks).sum(0) / n_out
    return in_acc - out_acc, in_acc, out_acc, n_in, n_out


def estimate_memorisation(td: TaskData, *, models: int, device: torch.device,
                          on_model: Callable[[int, float], None] | None = None) -> MemorisationScores:
    """The scores of every image of the task's training pool (``td.train``), from ``models`` models."""
    if models < 2:
        raise ValueError(f"the estimator needs at least 2 models (each image in some halves and out of others); got {models}")
    task = td.task
    if task.split_seed is None:
        raise ValueError(f"task {task.name} has no split seed: its pool changes with the model seed, so no fixed "
                         "forget set can be made from it; use a task with seeds by role")
    _, mean, std = dataset_facts(td)
    c, h, _ = td.dataset.image_shape
    index, train = td.train_index, td.train  # ascending dataset training indices, and their images
    masks = half_masks(len(index), models, task.split_seed)
    correct = torch.zeros(models, len(index), dtype=torch.bool)
    start = time.perf_counter()
    for k in range(models):
        model = build_model(task.arch, in_channels=c, image_size=h, num_classes=td.dataset.num_classes,
                            mean=mean, std=std, seed=seed_stream(k, "memorisation-init"))
        log = train_with_recipe(model, train.subset(masks[k]), task.recipe, seed=seed_stream(k, "memorisation-train"),
                                device=device, purpose="memorisation")
        correct[k] = predict_logits(model, train, device=device).argmax(1) == train.y
        if on_model is not None:
            on_model(k, log.seconds)
    score, in_acc, out_acc, n_in, n_out = scores_from_correct(correct, masks)
    return MemorisationScores(index, score, in_acc, out_acc, n_in, n_out, models, time.perf_counter() - start)


def select(scores: MemorisationScores, stratum: Stratum, size: int, seed: int) -> list[int]:
    """The dataset training indices of the ``stratum`` forget set of ``size`` images (module docstring)."""
    n = len(scores.index)
    if not 0 < size < n:
        raise ValueError(f"a forget set of {size} images must be smaller than the {n}-image pool and not empty")
    if stratum == "high":
        shuffle = torch.randperm(n, generator=generator(seed, "memorisation-ties"))
        ranked = shuffle[torch.argsort(scores.score[shuffle], descending=True, stable=True)]
        return sorted(scores.index[ranked[:size]].tolist())
    if stratum == "low":
        never = torch.nonzero((scores.in_accuracy == 1) & (scores.out_accuracy == 1)).flatten()
        if len(never) < size:
            raise ValueError(f"only {len(never)} images were right in every model, fewer than the {size} asked for; "
                             "ask for fewer (--size)")
        pick = never[torch.randperm(len(never), generator=generator(seed, "memorisation-low"))[:size]]
        return sorted(scores.index[pick].tolist())
    raise ValueError(f"unknown stratum {stratum!r}; expected 'high' or 'low'")


def summary(scores: MemorisationScores, chosen: list[int]) -> dict[str, float]:
    """Mean score, in- and out-accuracy of the chosen images (what a forget-set file records)."""
    pick = torch.isin(scores.index, torch.tensor(chosen))
    return {"mean_score": round(float(scores.score[pick].mean()), 6),
            "mean_in_accuracy": round(float(scores.in_accuracy[pick].mean()), 6),
            "mean_out_accuracy": round(float(scores.out_accuracy[pick].mean()), 6)}


def make_forget_sets(task_name: str, *, models: int, size: int, name: str, device: str = "cpu",
                     data_root: str | None = None, folder: Path | None = None,
                     progress: Callable[[str], None] | None = None) -> list[Path]:
    """``bench memorisation``: score the task's pool and write ``<name>.scores.json`` and the forget
    sets ``<name>-high`` and ``<name>-low`` (:mod:`bench.forgetsets`). Refuses, before training,
    to overwrite any of them."""
    import json
    import platform

    from bench.env import environment
    from bench.files import atomic_write_text
    from bench.forgetsets import forget_set_path, write_forget_set
    from bench.splits import build_task_data
    from bench.tasks import get_task

    task = get_task(task_name)
    paths = {s: forget_set_path(f"{name}-{s}", folder) for s in ("high", "low")}
    scores_path = forget_set_path(f"{name}.scores", folder)
    existing = [str(p) for p in (*paths.values(), scores_path) if p.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} exist(s); a shipped forget set is never overwritten — choose "
                              "another --name, or delete the files yourself if you mean to replace them")
    if not 0 < size < (task.train_subset or size + 1):
        raise ValueError(f"--size {size} must be positive and below the task's {task.train_subset}-image pool")
    td = build_task_data(task, task.split_seed if task.split_seed is not None else 0, data_root)
    made_by = f"bench memorisation {task.name} --models {models} --size {size} --name {name} --device {device}"
    say = progress or (lambda msg: None)
    scores = estimate_memorisation(td, models=models, device=torch.device(device),
                                   on_model=lambda k, s: say(f"model {k + 1}/{models} trained in {s:.1f} s"))
    how = {"estimator": "Feldman & Zhang (2020): mean correctness in - out of the model's random half",
           "pool_task": task.name, "pool_task_version": task.version, "pool_size": len(scores.index), "models": models,
           "device": device, "threads": torch.get_num_threads(), "machine": platform.machine(),
           **environment(), "seconds": round(scores.seconds, 1)}
    written = []
    for stratum, path in paths.items():
        chosen = select(scores, stratum, size, task.split_seed or 0)
        written.append(write_forget_set(path.stem, chosen, dataset=task.dataset, made_by=made_by, folder=path.parent,
                                        stratum=stratum, **how, chosen=summary(scores, chosen)))
    table = {"made_by": made_by, **how, "index": scores.index.tolist(),
             "score": [round(float(v), 6) for v in scores.score], "in_accuracy": [round(float(v), 6) for v in scores.in_accuracy],
             "out_accuracy": [round(float(v), 6) for v in scores.out_accuracy],
             "n_in": scores.n_in.tolist(), "n_out": scores.n_out.tolist()}
    written.append(atomic_write_text(scores_path, json.dumps(table) + "\n"))
    return written
