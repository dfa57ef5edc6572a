"""Face datasets for identity-level forgetting (DLFD's tasks): MUFAC ages and RAF-DB emotions.

Neither can be downloaded by this code; both are read from a folder the user gives
(``--data-root DIR`` or ``$UNLEARNBENCH_DATA``), and a clear :class:`DataMissing` says where to
obtain them when they are absent.

**MUFAC** (Machine Unlearning for Facial Age Classifier; Choi & Na, "Towards Machine Unlearning
Benchmarks: Forgetting the Personal Identities in Facial Recognition Systems"; repository
``github.com/ndb796/MachineUnlearning``, data ``custom_korean_family_dataset_resolution_128.zip``
from ``github.com/ndb796/korean_family_dataset``). On disk::

    custom_korean_family_dataset_resolution_128/
        custom_train_dataset.csv   train_images/   F0001_AGE_D_18_a1.jpg ...  (families F0001-F0299)
        custom_val_dataset.csv     val_images/     (F0801-F0850)
        custom_test_dataset.csv    test_images/    (F0851-F0900, the "unseen" table)

Each table has the columns ``image_path`` (a file name in the table's image folder) and
``age_class`` (``a``-``h`` → 0-7: 0-6, 7-12, 13-19, 20-30, 31-45, 46-55, 56-66, 67-80 years); the
release's tables also carry ``family_id`` and ``person_id`` (and a leading unnamed index column).
Images are decoded with PIL as RGB and resized (bilinear) to 128×128 when they are not already.
The validation table is the task's fixed validation split; the test table is its test split.

**Identity rule** (one rule, :data:`MUFAC_FILE_NAME`): the file name
``<family>_AGE_<member>_<age>_<class><shot>.<ext>``, e.g. ``F0001_AGE_D_18_a2.jpg`` = family
F0001, member D (daughter; GF, GM, F, M, S, D, S2, D2, ...), age 18 at collection, class a, shot 2.
The **person** is ``<family>_<member>`` (``F0001_D``): family and member together identify one
person; age and shot vary between that person's images. A name that does not match is an error
naming the file; when the table has ``family_id``/``person_id`` columns they must agree with the
name.

**RAF-DB basic** (Li, Deng & Du, CVPR 2017; 7 expressions): obtained from the authors on request
(``http://www.whdeng.cn/RAF/model1.html``). The layout read here is the one DLFD's
``RAF_loader.py`` reads with ``torchvision.datasets.ImageFolder``::

    RAF_DB/train/<class>/*.jpg      RAF_DB/test/<class>/*.jpg

with the same 7 class folders in both (RAF-DB's labels 1-7: surprise, fear, disgust, happiness,
sadness, anger, neutral; folders named ``1`` … ``7`` get those names). Images are decoded as RGB,
resized to 128×128 (bilinear) and converted to grayscale (PIL "L"), repeated to 3 channels — the
reference's ``Resize((128, 128))`` then ``Grayscale(num_output_channels=3)``. The order of the
training images is ``ImageFolder``'s (torchvision's ``make_dataset``), so the task
``raf-emotion-paper`` reproduces the reference split exactly. RAF-DB carries no identities.

Both datasets set ``leakage_audit``: the splitter (:func:`bench.splits.build_task_data`) drops
perceptual duplicates and shared people between forget / retain / validation / test
(:mod:`bench.leakage`), and ``bench audit TASK`` reports what it found.
"""
from __future__ import annotations

import csv
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from bench.datasets import DataMissing, ImageDataset, register_dataset
from bench.datasets._idx import candidate_dirs, not_found_message

IMAGE_SIDE = 128

# ----------------------------------------------------------------------------------------- MUFAC

#: MUFAC's file-name rule; the person is ``family + "_" + member``.
MUFAC_FILE_NAME = re.compile(
    r"(?P<family>F\d{4})_AGE_(?P<member>[A-Z]+\d*)_(?P<age>\d{1,3})_(?P<age_class>[a-h])(?P<shot>\d+)\.(?i:jpe?g|png)"
)
AGE_CLASSES = ("a", "b", "c", "d", "e", "f", "g", "h")
AGE_RANGES = ("0-6", "7-12", "13-19", "20-30", "31-45", "46-55", "56-66", "67-80")
MUFAC_SUBDIRS = ("custom_korean_family_dataset_resolution_128", "mufac", "MUFAC")
#: split → (table, image folder), the release's names.
MUFAC_TABLES = {
    "train": ("custom_train_dataset.csv", "train_images"),
    "val": ("custom_val_dataset.csv", "val_images"),
    "test": ("custom_test_dataset.csv", "test_images"),
}
MUFAC_REQUIRED_COLUMNS = ("image_path", "age_class")
MUFAC_HOW_TO_GET = (
    "download custom_korean_family_dataset_resolution_128.zip, the data of the MUFAC benchmark "
    "(\"Machine Unlearning for Facial Age Classifier\", https://github.com/ndb796/MachineUnlearning; "
    "download link in https://github.com/ndb796/korean_family_dataset), unzip it into "
    "DIR/custom_korean_family_dataset_resolution_128 and pass --data-root DIR (or set UNLEARNBENCH_DATA=DIR)"
)


def mufac_person(file_name: str) -> str:
    """The person of a MUFAC image: ``F0001_AGE_D_18_a2.jpg`` → ``"F0001_D"`` (family + member).

    Raises ``ValueError`` naming the file when the name does not follow :data:`MUFAC_FILE_NAME`.
    """
    match = MUFAC_FILE_NAME.fullmatch(Path(file_name).name)
    if match is None:
        raise ValueError(
            f"MUFAC image name {file_name!r} does not follow <family>_AGE_<member>_<age>_<class><shot>.jpg "
            "(e.g. F0001_AGE_D_18_a2.jpg), so its person cannot be known"
        )
    return f"{match['family']}_{match['member']}"


def read_mufac_table(table: Path) -> list[tuple[str, int, str]]:
    """Rows of a MUFAC table as ``(image_path, label 0-7, person)``, in table order (checked)."""
    fix = f"Use the tables as released: {MUFAC_HOW_TO_GET}"
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in MUFAC_REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DataMissing(
                    f"{table}: missing column(s) {missing}; found {columns}. A MUFAC table needs the columns "
                    f"image_path and age_class (family_id and person_id are optional). {fix}"
                )
            raw = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as err:
        raise DataMissing(f"{table} is not a text CSV file ({err}). {fix}") from err
    if not raw:
        raise DataMissing(f"{table} has a header but no rows. {fix}")
    rows = []
    for line, row in enumerate(raw, start=2):
        path, age_class = row["image_path"], row["age_class"]
        if age_class not in AGE_CLASSES:
            raise DataMissing(f"{table}, line {line}: age_class {age_class!r} of {path!r} is not one of a-h. {fix}")
        try:
            person = mufac_person(path)
        except ValueError as err:
            raise DataMissing(f"{table}, line {line}: {err}. {fix}") from None
        family, member = person.split("_", 1)
        for column, expected in (("family_id", family), ("person_id", member)):
            if column in row and row[column] != expected:
                raise DataMissing(
                    f"{table}, line {line}: {column} {row[column]!r} disagrees with the file name {path!r} "
                    f"(which says {expected!r}). {fix}"
                )
        rows.append((path, AGE_CLASSES.index(age_class), person))
    return rows


def find_mufac_root(data_root: Path | None) -> Path:
    """The first folder (see :func:`bench.datasets._idx.candidate_dirs`) holding the training table."""
    searched = []
    for folder in candidate_dirs(data_root, MUFAC_SUBDIRS):
        if (folder / MUFAC_TABLES["train"][0]).is_file():
            return folder
        searched.append((folder, f"no {MUFAC_TABLES['train'][0]}" if folder.is_dir() else "no such folder"))
    raise DataMissing(not_found_message(
        "MUFAC", f"{', '.join(t for t, _ in MUFAC_TABLES.values())} and the folders "
        f"{', '.join(d for _, d in MUFAC_TABLES.values())}", searched, MUFAC_HOW_TO_GET,
    ))


@register_dataset("mufac", "MUFAC faces, 8 age classes, 128x128 RGB, identities from file names (from --data-root; not downloadable)")
def load_mufac(data_root: Path | None = None) -> ImageDataset:
    """Load MUFAC's train / val / test tables and images (see the module docstring)."""
    root = find_mufac_root(data_root)
    splits: dict[str, tuple[torch.Tensor, torch.Tensor, list[str]]] = {}
    for split, (table_name, folder_name) in MUFAC_TABLES.items():
        table, folder = root / table_name, root / folder_name
        if not table.is_file():
            raise DataMissing(f"MUFAC table {table} is missing ({root} has {MUFAC_TABLES['train'][0]}). {MUFAC_HOW_TO_GET}")
        if not folder.is_dir():
            raise DataMissing(f"MUFAC image folder {folder} is missing (the images of {table_name}). {MUFAC_HOW_TO_GET}")
        rows = read_mufac_table(table)
        paths = [folder / path for path, _, _ in rows]
        check_files_exist(paths, f"MUFAC {table_name}", MUFAC_HOW_TO_GET)
        x = decode_images(paths, rgb_128)
        y = torch.tensor([label for _, label, _ in rows], dtype=torch.int64)
        splits[split] = (x, y, [person for _, _, person in rows])
    names = tuple(sorted({p for _, _, people in splits.values() for p in people}))
    ids = {name: i for i, name in enumerate(names)}
    groups = {s: torch.tensor([ids[p] for p in people], dtype=torch.int64) for s, (_, _, people) in splits.items()}
    return ImageDataset(
        name="mufac",
        train_x=splits["train"][0], train_y=splits["train"][1],
        test_x=splits["test"][0], test_y=splits["test"][1],
        classes=tuple(f"{c} ({r} years)" for c, r in zip(AGE_CLASSES, AGE_RANGES)),
        source=f"MUFAC tables and images in {root}",
        val_x=splits["val"][0], val_y=splits["val"][1],
        train_groups=groups["train"], val_groups=groups["val"], test_groups=groups["test"],
        group_names=names, leakage_audit=True,
    )


# ---------------------------------------------------------------------------------------- RAF-DB

RAF_SUBDIRS = ("RAF_DB", "RAF-DB", "raf-db", "rafdb", "raf_db", "RAF_DB/DATASET", "DATASET")
#: RAF-DB basic's labels 1-7 (``EmoLabel/list_patition_label.txt``).
RAF_LABEL_NAMES = {"1": "surprise", "2": "fear", "3": "disgust", "4": "happiness", "5": "sadness", "6": "anger", "7": "neutral"}
RAF_NUM_CLASSES = 7
RAF_HOW_TO_GET = (
    "request RAF-DB (basic) from its authors (http://www.whdeng.cn/RAF/model1.html; academic use agreement), "
    "arrange its aligned images as DIR/RAF_DB/train/<class>/*.jpg and DIR/RAF_DB/test/<class>/*.jpg "
    "(7 class folders 1-7, the labels of EmoLabel/list_patition_label.txt) and pass --data-root DIR "
    "(or set UNLEARNBENCH_DATA=DIR)"
)


def find_raf_root(data_root: Path | None) -> Path:
    """The first candidate folder holding both ``train/`` and ``test/``."""
    searched = []
    for folder in candidate_dirs(data_root, RAF_SUBDIRS):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return folder
        searched.append((folder, "no train/ and test/ folders" if folder.is_dir() else "no such folder"))
    raise DataMissing(not_found_message("RAF-DB (basic)", "train/<class>/ and test/<class>/ image folders", searched, RAF_HOW_TO_GET))


def image_folder_files(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and ``(path, class index)`` in ``torchvision.datasets.ImageFolder``'s order."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(folder))
        samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DataMissing(f"RAF-DB folder {folder}: {err}. {RAF_HOW_TO_GET}") from None
    return classes, [(Path(p), int(c)) for p, c in samples]


@register_dataset("rafdb", "RAF-DB basic, 7 expressions, 128x128 grayscale as 3 channels (from --data-root; not downloadable)")
def load_rafdb(data_root: Path | None = None) -> ImageDataset:
    """Load RAF-DB basic from ``train/<class>/`` and ``test/<class>/`` (see the module docstring)."""
    root = find_raf_root(data_root)
    train_classes, train_files = image_folder_files(root / "train")
    test_classes, test_files = image_folder_files(root / "test")
    if len(train_classes) != RAF_NUM_CLASSES:
        raise DataMissing(f"RAF-DB {root / 'train'} has {len(train_classes)} class folders {train_classes}; "
                          f"RAF-DB basic has {RAF_NUM_CLASSES}. {RAF_HOW_TO_GET}")
    if test_classes != train_classes:
        raise DataMissing(f"RAF-DB {root / 'test'} has the class folders {test_classes}, {root / 'train'} has "
                          f"{train_classes}; both need the same {RAF_NUM_CLASSES}. {RAF_HOW_TO_GET}")
    train_x = decode_images([p for p, _ in train_files], gray3_128)
    test_x = decode_images([p for p, _ in test_files], gray3_128)
    names = tuple(f"{c} ({RAF_LABEL_NAMES[c]})" if set(train_classes) == set(RAF_LABEL_NAMES) else c for c in train_classes)
    return ImageDataset(
        name="rafdb",
        train_x=train_x, train_y=torch.tensor([c for _, c in train_files], dtype=torch.int64),
        test_x=test_x, test_y=torch.tensor([c for _, c in test_files], dtype=torch.int64),
        classes=names,
        source=f"RAF-DB basic image folders in {root}",
        leakage_audit=True,
    )


# ------------------------------------------------------------------------------------- decoding


def check_files_exist(paths: Sequence[Path], what: str, how_to_get: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = "\n".join(f"  {p}" for p in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataMissing(f"{what}: {len(missing)} of {len(paths)} image files listed are missing:\n{shown}{more}\n{how_to_get}")


def rgb_128(image: Any) -> np.ndarray:
    """PIL image → uint8 ``[3, 128, 128]``: RGB, bilinear resize to 128×128 when needed (MUFAC)."""
    from PIL import Image

    image = image.convert("RGB")
    if image.size != (IMAGE_SIDE, IMAGE_SIDE):
        image = image.resize((IMAGE_SIDE, IMAGE_SIDE), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def gray3_128(image: Any) -> np.ndarray:
    """PIL image → uint8 ``[3, 128, 128]``: RGB, bilinear resize to 128×128, luma ("L"), 3 copies (RAF-DB)."""
    from PIL import Image

    image = image.convert("RGB")
    if image.size != (IMAGE_SIDE, IMAGE_SIDE):
        image = image.resize((IMAGE_SIDE, IMAGE_SIDE), Image.BILINEAR)
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    return np.repeat(gray[None], 3, axis=0)


def decode_images(paths: Sequence[Path], convert: Callable[[Any], np.ndarray]) -> torch.Tensor:
    """Decode ``paths`` with PIL (a few threads; order kept) into uint8 ``[N, 3, 128, 128]``."""
    from PIL import Image, UnidentifiedImageError

    def one(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                return convert(image)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DataMissing(f"cannot decode image {path} ({type(err).__name__}: {err}); the file is corrupt or "
                              "not an image — replace it from the original archive") from None

    out = np.empty((len(paths), 3, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, array in enumerate(pool.map(one, paths)):
            out[i] = array
    return torch.from_numpy(out)
