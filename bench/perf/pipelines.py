"""The pipeline measures of ``bench perf``: training and evaluation throughput of one task.

Three ways to train the task's model on the same images with the same batch size and optimizer:
the limit (model-only steps on one fixed batch already on the device, in the default and the
channels-last memory format), ours (:func:`bench.train.train_epochs` on the real images), and the
reference (a torchvision-style ``Dataset`` of PIL images with per-sample ``ToTensor`` +
``Normalize`` and a ``DataLoader``, as the seeds' repositories do). Two ways to evaluate: the
limit (model-only forward passes) and ours (:func:`bench.group.split_logits`). Every measure
starts from a fresh model; :func:`measure_pipelines` interleaves their repetitions and turns
the fastest of each into rows and ratios.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from bench.data import Split, TaskData, generator, to_float
from bench.splits import build_task_data
from bench.group import split_logits
from bench.perf.clock import Timing, interleaved, start_clock, stop_clock
from bench.perf.table import PerfRow, ratio
from bench.references import dataset_facts, model_factory
from bench.tasks import Recipe, Task
from bench.train import make_optimizer, train_epochs, train_step

#: The evaluation limit is the faster of predict_logits' default batches on CUDA and on the CPU.
EVAL_LIMIT_BATCHES = (1024, 256)
#: The training limit is the faster of the default (NCHW) and the channels-last memory format.
LIMIT_FORMATS = ("nchw", "channels_last")


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The batch sizes of one pass over ``n`` images (the last one partial), as in
    :func:`bench.data.batches` with ``drop_last=False``."""
    return [min(batch_size, n - start) for start in range(0, n, batch_size)]


def training_subset(split: Split, steps: int | None, batch_size: int, seed: int) -> Split:
    """All of ``split`` (``steps`` None), else ``min(steps · batch_size, len)`` images drawn at random."""
    if steps is None:
        return split
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    n = min(steps * batch_size, len(split))
    index = torch.randperm(len(split), generator=generator(seed, "perf", "subset"))[:n]
    return split.subset(index)


def limit_train(model: nn.Module, recipe: Recipe, x: torch.Tensor, y: torch.Tensor, sizes: Sequence[int],
                device: torch.device, *, channels_last: bool = False) -> Timing:
    """Model-only training throughput: forward, backward and optimizer step for each batch size in
    ``sizes`` on one fixed batch ``x`` (float images in [0, 1]) already on ``device``: no data
    handling at all. ``channels_last``: the model's weights (hence its activations) in NHWC."""
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr,
                         weight_decay=recipe.weight_decay, momentum=recipe.momentum)
    if len(x) < max(sizes):
        raise ValueError(f"limit_train needs a batch of {max(sizes)} images, got {len(x)}")
    use_amp = recipe.amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    start = start_clock(device)
    for n in sizes:
        train_step(model, opt, x[:n], y[:n], amp=use_amp)
    return stop_clock(sum(sizes), start, device)


def ours_train(model: nn.Module, split: Split, recipe: Recipe, *, seed: int, device: torch.device) -> Timing:
    """One epoch of :func:`bench.train.train_epochs` over ``split`` with the task's recipe, timed
    around the whole call (optimizer set-up, shuffling, batching, the loop)."""
    start = start_clock(device)
    log = train_epochs(model, split, epochs=1, batch_size=recipe.batch_size, lr=recipe.lr, seed=seed, device=device,
                       optimizer=recipe.optimizer, weight_decay=recipe.weight_decay, momentum=recipe.momentum,
                       schedule=recipe.schedule, augment=recipe.augment, amp=recipe.amp, purpose="perf")
    timing = stop_clock(len(split), start, device)
    if log.steps != len(batch_sizes(len(split), recipe.batch_size)):
        raise RuntimeError(f"train_epochs ran {log.steps} steps over {len(split)} images; expected one epoch")
    return timing


class ReferenceImages(torch.utils.data.Dataset):
    """A torchvision-style dataset, as the seeds' repositories use (``torchvision.datasets.MNIST``/
    ``FashionMNIST``/``CIFAR10``): uint8 arrays in memory, ``__getitem__`` makes a PIL image and
    applies the per-sample ``transform`` (``Compose([ToTensor(), Normalize(mean, std)])``)."""

    def __init__(self, split: Split, transform: Callable[[Any], torch.Tensor]) -> None:
        x = split.x.numpy()
        self.data = x[:, 0] if x.shape[1] == 1 else np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # [N,H,W] or [N,H,W,C]
        self.targets = split.y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.data[index], mode="L" if self.data.ndim == 3 else "RGB")
        return self.transform(img), self.targets[index]


def reference_transform(mean: Sequence[float], std: Sequence[float]) -> Callable[[Any], torch.Tensor]:
    """The seeds' per-sample transform: ``Compose([ToTensor(), Normalize(mean, std)])``."""
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))])


def reference_train(model: nn.Module, split: Split, recipe: Recipe, *, mean: Sequence[float], std: Sequence[float],
                    workers: int, seed: int, device: torch.device) -> Timing:
    """One epoch through ``DataLoader(ReferenceImages(...), shuffle=True, num_workers=workers)``:
    normalization happens in the transform, so the model's own normalization layer is replaced
    by the identity; same batch size, optimizer and images as :func:`ours_train`, default (NCHW)
    memory format as in the seeds' code. The time includes starting the workers, as every epoch
    of the seeds' code does, and their CPU time."""
    model.normalize = nn.Identity()
    model.to(device).train()
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr,
                         weight_decay=recipe.weight_decay, momentum=recipe.momentum)
    use_amp = recipe.amp and device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        ReferenceImages(split, reference_transform(mean, std)), batch_size=recipe.batch_size, shuffle=True,
        num_workers=workers, generator=generator(seed, "perf", "reference"), drop_last=False,
    )
    start = start_clock(device)
    images = 0
    for x, y in loader:
        train_step(model, opt, x.to(device), y.to(device), amp=use_amp)
        images += len(y)
    # The exhausted iterator has joined its workers, so their CPU time is in RUSAGE_CHILDREN now.
    return stop_clock(images, start, device)


@torch.no_grad()
def limit_eval(model: nn.Module, x: torch.Tensor, n: int, batch_size: int, device: torch.device) -> Timing:
    """Model-only forward throughput (eval mode) over ``n`` images in batches of ``batch_size``, on
    one fixed batch ``x`` already on ``device``."""
    model.to(device).eval()
    if len(x) < min(batch_size, n):
        raise ValueError(f"limit_eval needs a batch of {min(batch_size, n)} images, got {len(x)}")
    start = start_clock(device)
    for size in batch_sizes(n, batch_size):
        model(x[:size])
    return stop_clock(n, start, device)


def ours_eval(model: nn.Module, td: TaskData, device: torch.device) -> Timing:
    """:func:`bench.group.split_logits` (every split a run is evaluated on)."""
    start = start_clock(device)
    out = split_logits(model, td, device)
    return stop_clock(sum(len(v) for v in out.values()), start, device)


def eval_images(td: TaskData) -> int:
    """The images a run's evaluation predicts: every split :func:`bench.group.split_logits` covers."""
    return len(td.forget) + len(td.retain) + len(td.test) + (len(td.forget_test) if td.forget_test is not None else 0)


# ------------------------------------------------------------------------------------ per task


def training_runs(init: Callable[[], nn.Module], split: Split, recipe: Recipe, *, mean: Sequence[float],
                  std: Sequence[float], worker_counts: Sequence[int], seed: int,
                  device: torch.device) -> dict[str, Callable[[], Timing]]:
    """The training measures over ``split``, each a fresh model from ``init``. The limit's fixed
    batch is the first images of ``split`` (real images: on LeNet, uniform random tensors train
    ~10% slower than Fashion-MNIST images, which would put the "limit" below the harness)."""
    sizes = batch_sizes(len(split), recipe.batch_size)
    x = to_float(split.x[:max(sizes)]).to(device)
    y = split.y[:max(sizes)].to(device)
    runs: dict[str, Callable[[], Timing]] = {
        f"train_limit_{fmt}": (lambda cl=(fmt == "channels_last"): limit_train(init(), recipe, x, y, sizes, device,
                                                                                channels_last=cl))
        for fmt in LIMIT_FORMATS
    }
    runs["train_ours"] = lambda: ours_train(init(), split, recipe, seed=seed, device=device)
    for w in worker_counts:
        runs[f"train_reference_w{w}"] = lambda w=w: reference_train(init(), split, recipe, mean=mean, std=std,
                                                                    workers=w, seed=seed, device=device)
    return runs


def eval_runs(init: Callable[[], nn.Module], td: TaskData, n: int, device: torch.device, *,
              ours: bool) -> dict[str, Callable[[], Timing]]:
    """The evaluation measures: the model-only limit at each batch size of :data:`EVAL_LIMIT_BATCHES`
    over ``n`` images, and (``ours``) :func:`ours_eval` over every split of ``td``."""
    k = min(max(EVAL_LIMIT_BATCHES), n)
    x = to_float(td.train.x[torch.arange(k) % len(td.train)]).to(device)  # repeats images if the split is small
    runs: dict[str, Callable[[], Timing]] = {
        f"eval_limit_b{b}": (lambda b=b: limit_eval(init(), x, n, b, device)) for b in EVAL_LIMIT_BATCHES
    }
    if ours:
        runs["eval_ours"] = lambda: ours_eval(init(), td, device)
    return runs


def best_variant(best: dict[str, Timing], prefix: str) -> tuple[str, Timing]:
    """The variant ``prefix*`` with the highest wall throughput; its CPU time is the smallest of all
    variants' (each is a way the same model could be run)."""
    names = [k for k in best if k.startswith(prefix)]
    winner = max(names, key=lambda k: best[k].images_per_s)
    cpu = min(best[k].cpu_seconds for k in names)
    return winner, Timing(best[winner].images, best[winner].seconds, cpu)


def measure_pipelines(task: Task, *, device: torch.device, steps: int | None, repeats: int, workers: int,
                      data_root: str | None, seed: int = 0, progress: Callable[[str], None] | None = None) -> list[PerfRow]:
    """Limit, ours and the reference pipelines (training), limit and ours (evaluation), and
    their ratios, for one task; see :mod:`bench.perf`."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    td = build_task_data(task, seed, data_root)
    recipe = task.recipe
    init = model_factory(td)
    _, mean, std = dataset_facts(td)
    subset = training_subset(td.train, steps, recipe.batch_size, seed)
    worker_counts = sorted({0, workers})
    n_eval = eval_images(td)

    # Warm-up, untimed: one batch of every training pipeline, one batch of every evaluation limit
    # (kernel selection, allocator, lazy imports, the first worker start).
    warm = subset.subset(torch.arange(min(recipe.batch_size, len(subset))))
    for fn in [*training_runs(init, warm, recipe, mean=mean, std=std, worker_counts=worker_counts, seed=seed,
                              device=device).values(),
               *eval_runs(init, td, min(max(EVAL_LIMIT_BATCHES), n_eval), device, ours=False).values()]:
        fn()

    runs = training_runs(init, subset, recipe, mean=mean, std=std, worker_counts=worker_counts, seed=seed, device=device)
    runs |= eval_runs(init, td, n_eval, device, ours=True)
    report = None if progress is None else (
        lambda name, rep, t, load: progress(f"{task.name}: {name} {rep + 1}/{repeats}: {t.images_per_s:,.0f} images/s, "
                                            f"{t.images_per_cpu_s:,.0f} images/CPU-s (load {load:.1f})"))
    best, loads = interleaved(runs, repeats, report)
    for w in worker_counts:
        if best[f"train_reference_w{w}"].images != best["train_ours"].images:
            raise RuntimeError("the reference pipeline and ours processed different image counts")

    arch, note = task.arch, f"fastest of {repeats}"
    rows = [PerfRow(task.name, arch, name, t.images_per_s, "images/s", t.images, note, loads[name],
                    t.images_per_cpu_s) for name, t in best.items()]
    train_winner, best["train_limit"] = best_variant(best, "train_limit_")
    eval_winner, best["eval_limit"] = best_variant(best, "eval_limit_")
    ref_name = max((f"train_reference_w{w}" for w in worker_counts), key=lambda k: best[k].images_per_s)
    load = float(np.mean(list(loads.values())))  # every measure ran `repeats` times: the mean of all starts

    def derived(measure: str, t: Timing, note: str) -> PerfRow:
        return PerfRow(task.name, arch, measure, t.images_per_s, "images/s", t.images, note, load, t.images_per_cpu_s)

    def ratio_row(measure: str, a: str, b: str, note: str) -> PerfRow:
        return PerfRow(task.name, arch, measure, ratio(best[a].images_per_s, best[b].images_per_s), "ratio",
                       best[a].images, note, load, ratio(best[a].images_per_cpu_s, best[b].images_per_cpu_s))

    rows += [
        derived("train_limit", best["train_limit"], f"the faster of {', '.join(LIMIT_FORMATS)}: {train_winner}"),
        derived("eval_limit", best["eval_limit"], f"the faster of batch {', '.join(map(str, EVAL_LIMIT_BATCHES))}: "
                f"{eval_winner}"),
        ratio_row("ratio_train_ours_limit", "train_ours", "train_limit", "train_ours / train_limit"),
        ratio_row("ratio_eval_ours_limit", "eval_ours", "eval_limit", "eval_ours / eval_limit"),
        ratio_row("ratio_train_ours_ref", "train_ours", ref_name, f"train_ours / {ref_name} (the faster reference)"),
    ]
    return rows
