"""Reference models — the original and the oracle — trained once per (task, seed) and cached.

* The **original** is trained on D_f ∪ D_r with the task's recipe. It depends on the dataset,
  architecture, recipe, validation split and seed — not on what is forgotten — so tasks that
  differ only in their forget rule share it.
* The **oracle** is trained from the same initial weights, with the same recipe and seed, on D_r
  alone. Its training time is the runtime every method is compared with.

Cache entries are safetensors files named by a content hash (:func:`reference_key`) of everything
that defines the model, with the key, training time, device and a hash of the weights in the
file's metadata. Loading never unpickles anything. A file that cannot be read, whose key does not
match, or whose weights do not hash to the recorded value is moved aside (``*.corrupt``) and
rebuilt, with a message on stderr naming it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
import weakref
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from bench.data import Split, TaskData, seed_stream
from bench.datasets import ImageDataset
from bench.files import atomic_write
from bench.models import Classifier, build_model, state_hash
from bench.results import ORACLE, ORIGINAL
from bench.train import train_with_recipe

#: Bump when the reference training code changes in a way that moves numbers.
#: 2: training in channels-last memory format, evaluation in batches of 256 on the CPU.
REFERENCE_VERSION = 2
CACHE_FORMAT = "unlearnbench-reference/1"


@dataclass(frozen=True, eq=False)
class Reference:
    model: Classifier
    key: str
    train_seconds: float
    device: str
    trained_now: bool


@dataclass(frozen=True, eq=False)
class References:
    original: Reference
    oracle: Reference


_DATASET_FACTS: "weakref.WeakKeyDictionary[ImageDataset, tuple[str, tuple[float, ...], tuple[float, ...]]]" = weakref.WeakKeyDictionary()


def dataset_facts(td: TaskData) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """(content hash, channel mean, channel std) of the task's dataset, computed once per process."""
    ds = td.dataset
    if ds not in _DATASET_FACTS:
        mean, std = ds.channel_stats()
        _DATASET_FACTS[ds] = (ds.content_hash(), mean, std)
    return _DATASET_FACTS[ds]


def model_factory(td: TaskData) -> Callable[[], Classifier]:
    """A callable building the task's architecture with the seed's initial weights.

    A ``partial`` over the few numbers the architecture needs, not a closure over ``td``: a method
    receives it as ``data.init_model``, and a closure would let it reach the task's test and
    forget sets through ``init_model.__closure__`` whatever data it declared."""
    _, mean, std = dataset_facts(td)
    c, h, _ = td.dataset.image_shape
    return partial(build_model, td.task.arch, in_channels=c, image_size=h, num_classes=td.dataset.num_classes,
                   mean=mean, std=std, seed=seed_stream(td.seed, "init"))


def reference_key(kind: str, td: TaskData, device: torch.device) -> str:
    """Content hash of everything that defines a reference model.

    The original: dataset content, architecture, recipe, validation split, seed. The oracle:
    the same plus the exact forget/retain split. The device type is part of the key because
    training is not bit-identical across devices and the recorded training time is the
    baseline of every speed-up.
    """
    dataset_hash, _, _ = dataset_facts(td)
    parts = {
        "kind": kind,
        "reference_version": REFERENCE_VERSION,
        "dataset": td.task.dataset,
        "dataset_hash": dataset_hash,
        "arch": td.task.arch,
        "recipe": asdict(td.task.recipe),
        "val_fraction": td.task.val_fraction,
        "val_hash": td.val_hash,
        "seed": td.seed,
        "device_type": device.type,
    }
    if kind == ORACLE:
        parts["split_hash"] = td.split_hash
    blob = json.dumps(parts, sort_keys=True).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:20]}"


def reference_split(kind: str, td: TaskData) -> Split:
    """What a reference trains on: the original D_f ∪ D_r (the train split), the oracle D_r."""
    if kind == ORIGINAL:
        return td.train
    if kind == ORACLE:
        return td.retain
    raise ValueError(f"unknown reference kind {kind!r}; expected {ORIGINAL!r} or {ORACLE!r}")


def get_references(td: TaskData, *, device: torch.device, cache_dir: Path, on_train: Callable[[str], None] | None = None) -> References:
    """The task's original and oracle for this seed, from the cache or trained now."""
    init = model_factory(td)
    original, oracle = (load_or_train(kind, td, reference_split(kind, td), init, device=device, cache_dir=cache_dir,
                                      on_train=on_train) for kind in (ORIGINAL, ORACLE))
    return References(original=original, oracle=oracle)


def load_or_train(
    kind: str,
    td: TaskData,
    split: Split,
    init: Callable[[], Classifier],
    *,
    device: torch.device,
    cache_dir: Path,
    on_train: Callable[[str], None] | None = None,
) -> Reference:
    """The cached reference ``kind``, or train and cache it.

    An exclusive lock on the cache entry (``.locks/<key>.lock``, ``fcntl.flock``) is held while checking
    and training, so concurrent workers on one machine never build the same reference twice: the
    second waits, then loads what the first wrote.
    """
    key = reference_key(kind, td, device)
    path = Path(cache_dir) / f"{key}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    with entry_lock(path):
        if path.exists():
            model = init()
            try:
                seconds, trained_on = load_checkpoint(path, model, expected_key=key)
                return Reference(model.to(device), key, seconds, trained_on, trained_now=False)
            except CorruptCheckpoint as err:
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                os.replace(path, aside)
                print(f"unlearnbench: cached {kind} {path} is unusable ({err}); moved to {aside.name} and retraining",
                      file=sys.stderr)
        if on_train is not None:
            on_train(kind)
        model = init()
        log = train_with_recipe(model, split, td.task.recipe, seed=td.seed, device=device, purpose="reference")
        save_checkpoint(path, model, key=key, seconds=log.seconds, device=str(device), task=td.task.name)
        return Reference(model, key, log.seconds, str(device), trained_now=True)


def check_cache(cache_dir: Path) -> None:
    """Refuse, before any work, a cache whose content no reference can use: a ``.locks`` that is not
    a folder (or a lock that is not a file) failed every reference, so every method of the sweep was
    stored as a failed run. A corrupt checkpoint is no such error: it is moved aside and rebuilt."""
    locks = Path(cache_dir) / ".locks"
    if locks.exists() and not locks.is_dir():
        bad, kind = locks, "folder"
    else:  # globbing a missing folder finds nothing
        bad, kind = next((p for p in locks.glob("*.lock") if not p.is_file()), None), "file"
    if bad is not None:
        raise FileExistsError(f"reference cache {cache_dir}: {bad} is not a {kind}, so no reference can be locked; "
                              "remove it (the cache recreates it) or pass another --cache")


@contextlib.contextmanager
def entry_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on one cache entry (``<cache>/.locks/<entry>.lock``)."""
    locks = path.parent / ".locks"
    locks.mkdir(exist_ok=True)
    with open(locks / f"{path.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CorruptCheckpoint(ValueError):
    """A checkpoint that cannot be read, or does not match what it claims to be."""


def save_checkpoint(path: Path, model: Classifier, *, key: str, seconds: float, device: str, task: str) -> None:
    """Write ``model``'s weights as safetensors atomically (:func:`bench.files.atomic_write`). The
    bytes are serialized here and written by us: ``safetensors.torch.save_file`` makes its file
    0600 whatever the umask, which would lock others out of a shared cache."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "train_seconds": repr(float(seconds)),
        "device": device,
        "arch": model.arch,
        "task": task,
        "weights_sha256": state_hash(model),
    }
    blob = save(state, metadata=meta)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))


def load_checkpoint(path: Path, model: Classifier, *, expected_key: str | None = None) -> tuple[float, str]:
    """Load safetensors weights into ``model`` and verify them; returns (train seconds, device).

    Raises :class:`CorruptCheckpoint` when the file is unreadable, was written for another key or
    architecture, has missing/extra/misshapen tensors, or its weights do not match their hash.
    """
    try:

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CorruptCheckpoint(f"unreadable safetensors file: {err}") from None
    if meta.get("format") != CACHE_FORMAT:
        raise CorruptCheckpoint(f"not an unlearnbench reference (format {meta.get('format')!r})")
    if expected_key is not None and meta.get("key") != expected_key:
        raise CorruptCheckpoint(f"key {meta.get('key')!r} does not match {expected_key!r}")
    if meta.get("arch") != model.arch:
        raise CorruptCheckpoint(f"architecture {meta.get('arch')!r} does not match {model.arch!r}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CorruptCheckpoint(f"weights do not fit the model: {str(err).splitlines()[0]}") from None
    if state_hash(model) != meta.get("weights_sha256"):
        raise CorruptCheckpoint("weights do not match their recorded hash")
    try:
        return float(meta["train_seconds"]), meta.get("device", "")
    except (KeyError, ValueError):
        raise CorruptCheckpoint("missing training time in metadata") from None

