"""Standardized unlearning tasks: frozen dataclasses, one registry entry each.

A task fixes the dataset, the architecture, what to forget, the recipe that trains the original
and the oracle, the size of the validation split, the ranking metric and a ``version`` that is
stored with every number (bump it whenever anything here would move a number).

**Seeds by role.** A task with a ``split_seed`` fixes its validation split and its forget set by
that seed: every model seed s (``bench run --seeds``) trains original s and oracle s on the same
split and runs the method on original s, so N seeds give N (original, oracle, unlearned) triples
on one forget set — independent trainings, the layout the cross-seed per-example attacks
(:mod:`bench.crossseed`) need. A task without one (``split_seed=None``, the face tasks, and version 1
of the digits and Fashion-MNIST tasks) draws both from the model seed: each seed is a
different forget set, and the cross-seed attacks do not apply to it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from bench.lookup import Registry, UnknownName, unknown_message

#: What a task may forget (:class:`ForgetRule`'s ``kind``) and a method may declare it applies to
#: (``@method(applies_to=...)``): whole ``classes``, a ``random`` fraction of the images, whole
#: people (``identities``), or a shipped list of training images (``examples``: the
#: memorisation-stratified forget sets of :mod:`bench.memorisation`). The one declaration; :data:`FORGET_KINDS` is derived from it. A new
#: kind is declared here (with its parameters in :class:`ForgetRule`) and picks its images in
#: :func:`bench.splits.forget_mask`: two files.
ForgetKind = Literal["classes", "random", "identities", "examples"]
FORGET_KINDS: tuple[str, ...] = get_args(ForgetKind)


@dataclass(frozen=True)
class Recipe:
    """How the original and the oracle are trained (and what ``retrain`` repeats).

    ``optimizer`` is ``"adam"`` or ``"sgd"`` (with ``momentum``); ``schedule`` is ``"constant"``
    or ``"cosine"`` (per step, to zero). ``augment`` names a train-time augmentation
    (``"none"``, ``"crop"``: 4-pixel padded random crop, or ``"crop_flip"``: crop and horizontal
    flip). ``amp``: bfloat16 autocast when training on CUDA (never on CPU, where training is
    plain fp32).
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"
    augment: Literal["none", "crop", "crop_flip"] = "none"
    amp: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid recipe {self}")
        if self.optimizer not in ("adam", "sgd") or self.schedule not in ("constant", "cosine"):
            raise ValueError(f"invalid recipe {self}")
        if self.augment not in ("none", "crop", "crop_flip"):
            raise ValueError(f"invalid recipe augmentation {self.augment!r}")


@dataclass(frozen=True)
class ForgetRule:
    """What to forget: whole ``classes``, a ``random`` fraction of the training images, or
    whole people (``identities``, face tasks: every image of each selected person).

    * ``ForgetRule("identities", fraction=f)``: a seeded random fraction f of the training
      identities (round(f · #identities), at least one).
    * ``ForgetRule("identities", rows=n)``: the people of the first ``n`` rows of the dataset's
      training table (MUFAC's paper split: the first 1,500 rows), extended to every image of
      those people so that nobody is split between forget and retain.
    * ``ForgetRule("random", fraction=f, seed=s)``: the reference code's fixed split instead of a
      per-run one: one ``random.Random(s).shuffle`` of the training indices gives the validation
      split (its first ⌊val_fraction · n⌋), then retain (the next ⌊(1 − f) · rest⌋) and forget
      (the remainder), as in DLFD's ``RAF_loader.py`` (``seed=42``). Without ``seed`` the forget
      set is drawn from the run seed.
    * ``ForgetRule("examples", index_file=name, index_sha256=h)``: the training images listed in
      the shipped forget-set file ``name`` (:mod:`bench.forgetsets`), whose indices must hash to
      ``h`` — a file edited after the task was registered is an error, not other numbers.
    """

    kind: ForgetKind
    classes: tuple[int, ...] = ()
    fraction: float = 0.0
    rows: int = 0
    seed: int | None = None
    index_file: str = ""
    index_sha256: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FORGET_KINDS:
            raise ValueError(f"unknown forget kind {self.kind!r}; valid: {', '.join(FORGET_KINDS)}")
        if self.kind == "classes" and not self.classes:
            raise ValueError("class removal needs at least one class")
        if self.kind == "identities" and (self.rows > 0) == (self.fraction > 0.0):
            raise ValueError("identity forgetting needs either fraction (a random share of the people) or rows "
                             f"(the people of the first rows), exactly one; got fraction={self.fraction}, rows={self.rows}")
        if self.rows < 0 or (self.rows and self.kind != "identities"):
            raise ValueError(f"rows (the first-rows rule) applies to identity forgetting only, with rows > 0; got {self.kind} rows={self.rows}")
        if self.seed is not None and (self.kind != "random" or self.seed < 0):
            raise ValueError(f"a fixed split seed applies to random forgetting only, with seed >= 0; got {self.kind} seed={self.seed}")
        if (self.kind == "examples") != bool(self.index_file) or bool(self.index_file) != bool(self.index_sha256):
            raise ValueError("forgetting listed examples needs index_file (a shipped forget-set file) and its "
                             f"index_sha256, and only that kind takes them; got {self.kind} index_file={self.index_file!r}")
        if (self.kind == "random" or (self.kind == "identities" and not self.rows)) and not 0.0 < self.fraction < 1.0:
            raise ValueError(f"{self.kind} forgetting needs 0 < fraction < 1, got {self.fraction}")

    def describe(self) -> str:
        if self.kind == "classes":
            return f"class{'es' if len(self.classes) > 1 else ''} {', '.join(map(str, self.classes))}"
        if self.kind == "identities" and self.rows:
            return f"every image of the people in the first {self.rows} training rows"
        if self.kind == "examples":
            return f"the training images listed in forget set {self.index_file} (sha256 {self.index_sha256[:12]}…)"
        fixed = f" (fixed split, seed {self.seed})" if self.seed is not None else ""
        return f"{self.fraction:.0%} of training {'images' if self.kind == 'random' else 'identities'} at random{fixed}"


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    dataset: str
    arch: str
    forget: ForgetRule
    recipe: Recipe
    version: int
    val_fraction: float = 0.1
    primary_metric: str = "avg_gap"
    surrogate: str | None = None  # a source in bench.datasets.surrogate.SURROGATES
    surrogate_size: int = 0
    tags: tuple[str, ...] = field(default=())
    split_seed: int | None = None  # fixes validation and forget set; None: drawn from each model seed
    train_subset: int = 0  # > 0: train on a fixed class-stratified subset of this many images (memorising tasks)

    def __post_init__(self) -> None:
        if (self.surrogate is None) != (self.surrogate_size == 0):
            raise ValueError(f"task {self.name}: give both surrogate and surrogate_size, or neither")
        if self.split_seed is not None and self.split_seed < 0:
            raise ValueError(f"task {self.name}: split_seed must be >= 0 or None, got {self.split_seed}")
        if self.train_subset < 0 or (self.train_subset and self.split_seed is None):
            raise ValueError(f"task {self.name}: a training subset needs train_subset > 0 and a split_seed that fixes it; "
                             f"got train_subset={self.train_subset}, split_seed={self.split_seed}")

    @property
    def fixed_split(self) -> bool:
        """Whether every model seed shares one forget set (seeds by role; see the module docstring)."""
        return self.split_seed is not None

    def split_seed_for(self, model_seed: int) -> int:
        """The seed of the validation and forget draws for ``model_seed``: the task's own, or the
        model seed itself for a task without one."""
        return model_seed if self.split_seed is None else self.split_seed

    def describe_seeds(self) -> str:
        """The task card's line on what a seed means."""
        if self.split_seed is None:
            return ("each seed draws its own validation split and forget set and trains its models on them "
                    "(one forget set per seed: the cross-seed attacks do not apply)")
        return (f"validation split and forget set fixed by the task's split seed {self.split_seed}; seed s trains "
                "original s and oracle s and runs the method on original s")

    def identity(self) -> dict:
        """Everything that defines the task's numbers (hashed into run ids). ``split_seed``,
        ``train_subset`` and the forget rule's ``index_file``/``index_sha256`` join it only when
        set, so the run ids of the tasks without them are those they had before they existed."""
        out = asdict(self) | {"tags": None, "description": None}
        for key, unset in (("split_seed", None), ("train_subset", 0)):
            if out[key] == unset:
                del out[key]
        for key in ("index_file", "index_sha256"):
            if not out["forget"][key]:
                del out["forget"][key]
        return out


TASKS: Registry[Task] = Registry("task")
SUITES: dict[str, tuple[str, ...]] = {}


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)


def get_task(name: str | Task) -> Task:
    return name if isinstance(name, Task) else TASKS.get(name)


def list_tasks() -> list[str]:
    return TASKS.names()


def get_suite(name: str) -> tuple[str, ...]:
    if name not in SUITES:

        raise UnknownName(unknown_message("suite", name, list(SUITES)))
    return SUITES[name]


# ---------------------------------------------------------------------------------------------
# Digits: the embedded default. A small CNN trained to 100% training accuracy in seconds on CPU.
# Version 2: seeds by role (split seed 0): one forget set, N model seeds.
# ---------------------------------------------------------------------------------------------
DIGITS_RECIPE = Recipe(epochs=30, batch_size=64, lr=1e-3, optimizer="adam")

register_task(Task(
    name="digits-cnn-class",
    description="scikit-learn digits, small CNN: forget every training image of class 3",
    dataset="digits", arch="digits_cnn", forget=ForgetRule("classes", classes=(3,)),
    recipe=DIGITS_RECIPE, version=2, surrogate="photo_crops", surrogate_size=2000, tags=("quick",), split_seed=0,
))
register_task(Task(
    name="digits-cnn-random10",
    description="scikit-learn digits, small CNN: forget 10% of training images, uniformly at random",
    dataset="digits", arch="digits_cnn", forget=ForgetRule("random", fraction=0.1),
    recipe=DIGITS_RECIPE, version=2, surrogate="photo_crops", surrogate_size=2000, tags=("quick",), split_seed=0,
))
register_task(Task(
    name="digits-cnn-multiclass",
    description="scikit-learn digits, small CNN: forget every training image of classes 1 and 7",
    dataset="digits", arch="digits_cnn", forget=ForgetRule("classes", classes=(1, 7)),
    recipe=DIGITS_RECIPE, version=2, surrogate="photo_crops", surrogate_size=2000, tags=("quick",), split_seed=0,
))

SUITES["quick"] = ("digits-cnn-class", "digits-cnn-random10", "digits-cnn-multiclass")


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST: the real-data suite that runs on 2 CPU cores (Debian's dataset-fashion-mnist).
# LeNet, 8 epochs of Adam: ~0.90 test accuracy. On CPU the recipe cannot afford training to
# 100% training accuracy; the train/test gap (~4 points) is the membership signal.
# Version 2: seeds by role (split seed 0), as the digits tasks.
# ---------------------------------------------------------------------------------------------
FMNIST_RECIPE = Recipe(epochs=8, batch_size=128, lr=1e-3, optimizer="adam")

register_task(Task(
    name="fmnist-lenet-class",
    description="Fashion-MNIST, LeNet: forget every training image of class 0 (T-shirt/top)",
    dataset="fashion_mnist", arch="lenet", forget=ForgetRule("classes", classes=(0,)),
    recipe=FMNIST_RECIPE, version=2, surrogate="photo_crops", surrogate_size=10000, tags=("fmnist",),
    split_seed=0,
))
register_task(Task(
    name="fmnist-lenet-random10",
    description="Fashion-MNIST, LeNet: forget 10% of training images, uniformly at random",
    dataset="fashion_mnist", arch="lenet", forget=ForgetRule("random", fraction=0.1),
    recipe=FMNIST_RECIPE, version=2, surrogate="photo_crops", surrogate_size=10000, tags=("fmnist",),
    split_seed=0,
))
register_task(Task(
    name="fmnist-lenet-multiclass",
    description="Fashion-MNIST, LeNet: forget every training image of classes 2 (pullover) and 7 (sneaker)",
    dataset="fashion_mnist", arch="lenet", forget=ForgetRule("classes", classes=(2, 7)),
    recipe=FMNIST_RECIPE, version=2, surrogate="photo_crops", surrogate_size=10000, tags=("fmnist",),
    split_seed=0,
))
SUITES["fmnist"] = ("fmnist-lenet-class", "fmnist-lenet-random10", "fmnist-lenet-multiclass")

# ---------------------------------------------------------------------------------------------
# Memorising Fashion-MNIST: a fixed class-stratified 10,000-image training subset (1,000 per class;
# split seed 0), which LeNet memorises on 2 CPU cores (40 epochs of Adam 2e-3, batch 128, cosine to
# zero: ≥ 99 % training accuracy, no augmentation), so that an oracle that never saw the forget
# set is measurably worse on it than the original. Validation: 1,000 held-out training images
# outside the subset. The originals of the five tasks are one model per seed (same pool).
# highmem / lowmem forget the shipped memorisation-stratified sets (bench.memorisation; made by
# the command in their files): the most memorised 1,000, and 1,000 that need no memory — the
# designed negative control, where the ideal unlearning changes nothing.
# ---------------------------------------------------------------------------------------------
MEM_RECIPE = Recipe(epochs=40, batch_size=128, lr=2e-3, optimizer="adam", schedule="cosine")
MEM_SUBSET = 10000
MEM_FORGET_SETS = {  # forget-set file → sha256 of its indices (bench.forgetsets.index_sha256)
    "fmnist-mem10k-high": "c7e54dac5dd99b7cd1319f4b1a4f2fb657eaa3511f299ac0fe274e8162fdea73",
    "fmnist-mem10k-low": "839435ac62a130a03021c2b80695648dcc0f5c6d5492b06b18b2836d69665d70",
}

for _name, _desc, _rule in [
    ("fmnist-lenet-mem10k-random10", "forget 10% of the training subset, uniformly at random",
     ForgetRule("random", fraction=0.1)),
    ("fmnist-lenet-mem10k-class", "forget every subset image of class 0 (T-shirt/top)", ForgetRule("classes", classes=(0,))),
    ("fmnist-lenet-mem10k-multiclass", "forget every subset image of classes 2 (pullover) and 7 (sneaker)",
     ForgetRule("classes", classes=(2, 7))),
    ("fmnist-lenet-mem10k-highmem", "forget the 1,000 subset images of highest memorisation score",
     ForgetRule("examples", index_file="fmnist-mem10k-high", index_sha256=MEM_FORGET_SETS["fmnist-mem10k-high"])),
    ("fmnist-lenet-mem10k-lowmem", "forget 1,000 subset images that need no memorisation (negative control)",
     ForgetRule("examples", index_file="fmnist-mem10k-low", index_sha256=MEM_FORGET_SETS["fmnist-mem10k-low"])),
]:
    register_task(Task(
        name=_name, description=f"Fashion-MNIST 10k subset, LeNet trained to memorise it: {_desc}",
        dataset="fashion_mnist", arch="lenet", forget=_rule, recipe=MEM_RECIPE, version=1, surrogate="photo_crops",
        surrogate_size=10000, tags=("memorising",), split_seed=0, train_subset=MEM_SUBSET,
    ))
SUITES["memorising"] = tuple(t for t in TASKS.names() if "memorising" in TASKS.get(t).tags)

# ---------------------------------------------------------------------------------------------
# The papers' GPU-scale tasks. CIFAR/SVHN ResNet-18: SalUn's recipe (SGD 0.1, momentum 0.9,
# weight decay 5e-4, 182 epochs; Scissorhands reuses SalUn's originals) with a cosine schedule in
# place of its step decay. MNIST AllCNN: the anti-samples paper's recipe (Adam 1e-3, 50 epochs,
# batch 128). Surrogate for SCAR: 10,000 crops of the sample photographs (the paper's ImageNet
# subset cannot be downloaded here).
# ---------------------------------------------------------------------------------------------
RESNET_RECIPE = Recipe(epochs=182, batch_size=256, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                       schedule="cosine", augment="crop_flip", amp=True)
SVHN_RECIPE = Recipe(epochs=50, batch_size=256, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                     schedule="cosine", augment="crop", amp=True)
MNIST_ALLCNN_RECIPE = Recipe(epochs=50, batch_size=128, lr=1e-3, optimizer="adam", amp=True)

for _name, _desc, _ds, _arch, _rule, _recipe in [
    ("cifar10-resnet18-class", "CIFAR-10, ResNet-18 (CIFAR stem): forget class 0 (airplane)",
     "cifar10", "resnet18_cifar", ForgetRule("classes", classes=(0,)), RESNET_RECIPE),
    ("cifar10-resnet18-random10", "CIFAR-10, ResNet-18 (CIFAR stem): forget 10% of training images at random",
     "cifar10", "resnet18_cifar", ForgetRule("random", fraction=0.1), RESNET_RECIPE),
    ("cifar100-resnet18-class", "CIFAR-100, ResNet-18 (CIFAR stem): forget class 0 (apple)",
     "cifar100", "resnet18_cifar", ForgetRule("classes", classes=(0,)), RESNET_RECIPE),
    ("svhn-resnet18-class", "SVHN, ResNet-18 (CIFAR stem): forget class 0 (digit 0; Scissorhands' setting)",
     "svhn", "resnet18_cifar", ForgetRule("classes", classes=(0,)), SVHN_RECIPE),
    ("mnist-allcnn-class", "MNIST, AllCNN: forget class 0 (the anti-samples paper's setting)",
     "mnist", "allcnn", ForgetRule("classes", classes=(0,)), MNIST_ALLCNN_RECIPE),
    ("cifar10-allcnn-multiclass", "CIFAR-10, AllCNN: forget classes 1 and 9 (automobile, truck)",
     "cifar10", "allcnn", ForgetRule("classes", classes=(1, 9)), Recipe(epochs=50, batch_size=128, lr=1e-3, augment="crop_flip", amp=True)),
]:
    register_task(Task(name=_name, description=_desc, dataset=_ds, arch=_arch, forget=_rule, recipe=_recipe,
                       version=1, surrogate="photo_crops", surrogate_size=10000, tags=("paper",)))
SUITES["paper"] = tuple(t for t in TASKS.names() if "paper" in TASKS.get(t).tags)

# ---------------------------------------------------------------------------------------------
# Face tasks (DLFD, Choi & Na 2024): forget people, keep the task (age, emotion). ResNet-18 (no
# pretraining) with DLFD's MLP head at 128x128. Recipe: the reference notebooks' SGD 0.01,
# momentum 0.9, weight decay 5e-4, 100 epochs, batch 32 (age) / 64 (emotion); their
# CosineAnnealingLR(T_max=200) is stepped per batch (a cycling rate), ours is one cosine to zero;
# their flip/affine/jitter augmentation becomes crop_flip. Ranked by NoMUS (MUFAC's score).
# MUFAC validation = its validation table as it is (val_fraction=0), test = its unseen table;
# splits pass the leakage audit (bench.leakage; `bench audit TASK`). Data from --data-root.
# ---------------------------------------------------------------------------------------------
MUFAC_RECIPE = Recipe(epochs=100, batch_size=32, lr=0.01, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                      schedule="cosine", augment="crop_flip", amp=True)
RAF_RECIPE = Recipe(epochs=100, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                    schedule="cosine", augment="crop_flip", amp=True)

register_task(Task(
    name="mufac-age-identity",
    description="MUFAC age (8 classes), ResNet-18 face: forget every image of 15% of the training people "
                "(seeded); validation = MUFAC's validation table, test = its unseen test table",
    dataset="mufac", arch="resnet18_face", forget=ForgetRule("identities", fraction=0.15),
    recipe=MUFAC_RECIPE, version=1, val_fraction=0.0, primary_metric="nomus",
    surrogate="photo_crops", surrogate_size=2000, tags=("faces",),
))
register_task(Task(
    name="mufac-age-paper",
    description="MUFAC age (8 classes), ResNet-18 face: the papers' split, the people of the first 1,500 "
                "training rows (whole); validation = MUFAC's validation table, test = its unseen test table",
    dataset="mufac", arch="resnet18_face", forget=ForgetRule("identities", rows=1500),
    recipe=MUFAC_RECIPE, version=1, val_fraction=0.0, primary_metric="nomus",
    surrogate="photo_crops", surrogate_size=2000, tags=("faces",),
))
register_task(Task(
    name="raf-emotion-paper",
    description="RAF-DB basic emotion (7 classes), ResNet-18 face: DLFD's split, 10% validation, then of the "
                "rest 70% retain / 30% forget at random (random.Random(42), ImageFolder order)",
    dataset="rafdb", arch="resnet18_face", forget=ForgetRule("random", fraction=0.3, seed=42),
    recipe=RAF_RECIPE, version=1, val_fraction=0.1, primary_metric="nomus",
    surrogate="photo_crops", surrogate_size=2000, tags=("faces",),
))
SUITES["faces"] = ("mufac-age-identity", "mufac-age-paper", "raf-emotion-paper")
