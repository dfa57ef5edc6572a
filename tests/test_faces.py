"""Face datasets (MUFAC, RAF-DB basic), identity forgetting and the leakage audit.

Every test writes small face-like images in the datasets' exact on-disk layouts (MUFAC: CSV tables
+ image folders; RAF-DB: ``train/<class>/``, ``test/<class>/``) into pytest's temporary folders;
nothing depends on what the machine has installed. The end-to-end runs train the real face
architecture (ResNet-18 at 128×128) for one epoch on CPU and are marked slow.
"""
from __future__ import annotations

import csv
import dataclasses
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import bench
import bench.datasets as datasets_pkg
from bench import cli
from bench.leakage import HASH_MAX_DISTANCE, HASH_TIE_LEVELS, format_audit, near_pairs, perceptual_hashes
from bench.datasets import DataMissing, ImageDataset, load_dataset
from bench.datasets import faces
from bench.run.plan import make_plan
from bench.registry import list_methods
from bench.splits import build_task_data, reference_shuffle
from bench.tasks import SUITES, TASKS, ForgetRule, Recipe, Task, get_task

SHOTS = 5
#: (family, member, age, age class) of the fixture's people, per MUFAC table.
PEOPLE = {
    "train": [("F0001", "D", 18, "d"), ("F0001", "M", 45, "e"), ("F0001", "F", 50, "f"), ("F0001", "GM", 75, "h"),
              ("F0002", "S", 10, "b"), ("F0002", "D", 15, "c"), ("F0002", "M", 40, "e"), ("F0002", "F", 44, "e"),
              ("F0003", "GF", 70, "h"), ("F0003", "GM", 66, "g"), ("F0003", "S2", 5, "a"), ("F0003", "D2", 25, "d")],
    "val": [("F0801", "D", 20, "d"), ("F0801", "M", 52, "f")],
    "test": [("F0851", "S", 12, "b"), ("F0851", "F", 60, "g")],
}
TINY_RECIPE = Recipe(epochs=1, batch_size=16, lr=0.01, optimizer="sgd", momentum=0.9, weight_decay=5e-4)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNLEARNBENCH_DATA", raising=False)
    datasets_pkg._CACHE.clear()
    yield
    datasets_pkg._CACHE.clear()


# --------------------------------------------------------------------------- writers of the real layouts


def face_like(rng: np.random.Generator, size: int = 128, mode: str = "RGB") -> Image.Image:
    """A smooth random background with a face-like ellipse, eyes and mouth at random places."""
    field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(field)
    s = size / 128
    tone = tuple(int(v) for v in rng.integers(90, 230, 3))
    draw.ellipse((32 * s, 20 * s, 96 * s, 108 * s), fill=tone)
    for cx in (48, 80):
        ex, ey = (cx + rng.integers(-6, 7)) * s, (52 + rng.integers(-6, 7)) * s
        draw.ellipse((ex - 5 * s, ey - 4 * s, ex + 5 * s, ey + 4 * s), fill=(20, 20, 20))
    my = (84 + rng.integers(-6, 7)) * s
    draw.line((52 * s, my, 76 * s, my + rng.integers(-5, 6) * s), fill=(120, 30, 30), width=max(1, int(3 * s)))
    return field.convert(mode)


def mufac_name(family: str, member: str, age: int, age_class: str, shot: int) -> str:
    return f"{family}_AGE_{member}_{age}_{age_class}{shot}.jpg"


def write_mufac(base: Path, *, seed: int = 0, shots: int = SHOTS, people: dict | None = None) -> Path:
    """The release's layout under ``base/custom_korean_family_dataset_resolution_128``: three CSV
    tables written like pandas' ``to_csv`` (leading unnamed index column; family_id, person_id,
    age_class, image_path) and the three image folders of 128×128 JPEGs."""
    rng = np.random.default_rng(seed)
    root = base / "custom_korean_family_dataset_resolution_128"
    for split, (table, folder) in faces.MUFAC_TABLES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        with open(root / table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["", "family_id", "person_id", "age_class", "image_path"])
            index = 0
            for family, member, age, age_class in (people or PEOPLE)[split]:
                for shot in range(1, shots + 1):
                    name = mufac_name(family, member, age, age_class, shot)
                    face_like(rng).save(root / folder / name, quality=95)
                    writer.writerow([index, family, member, age_class, name])
                    index += 1
    return root


def table_rows(root: Path, split: str) -> list[dict[str, str]]:
    with open(root / faces.MUFAC_TABLES[split][0], newline="") as f:
        return list(csv.DictReader(f))


def rewrite_table(root: Path, split: str, rows: list[dict[str, str]], columns: list[str] | None = None) -> None:
    columns = columns or ["", "family_id", "person_id", "age_class", "image_path"]
    with open(root / faces.MUFAC_TABLES[split][0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_raf(base: Path, *, per_class_train: int = 6, per_class_test: int = 2, seed: int = 1,
              classes: tuple[str, ...] = tuple("1234567")) -> Path:
    """RAF-DB basic as DLFD reads it: ``RAF_DB/{train,test}/<class>/*.jpg``, 100×100 aligned faces
    (some colour, some grayscale, as in the release)."""
    rng = np.random.default_rng(seed)
    root = base / "RAF_DB"
    counter = 0
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                counter += 1
                face_like(rng, size=100, mode="L" if counter % 3 == 0 else "RGB").save(
                    root / split / c / f"{split}_{counter:05d}_aligned.jpg", quality=95)
    return root


def mufac_task(forget: ForgetRule, name: str = "test-mufac-identity") -> Task:
    return Task(name=name, description="TEST", dataset="mufac", arch="resnet18_face", forget=forget,
                recipe=TINY_RECIPE, version=1, val_fraction=0.0, primary_metric="nomus")


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


# --------------------------------------------------------------------------- MUFAC: loader


@pytest.mark.parametrize("name, person", [
    ("F0001_AGE_D_18_a2.jpg", "F0001_D"),
    ("F0856_AGE_M_75_g3.JPG", "F0856_M"),
    ("F0012_AGE_S2_7_b1.jpg", "F0012_S2"),
    ("F0900_AGE_GF_80_h12.png", "F0900_GF"),
    ("train_images/F0003_AGE_GM_66_g1.jpg", "F0003_GM"),
])
def test_mufac_person_is_family_plus_member(name: str, person: str) -> None:
    assert faces.mufac_person(name) == person


@pytest.mark.parametrize("name", [
    "F001_AGE_D_18_a2.jpg", "F0001_D_18_a2.jpg", "F0001_AGE_D_18_z2.jpg", "F0001_AGE_D_18_a.jpg",
    "F0001_AGE_d_18_a2.jpg", "F0001_AGE_D_18_a2.gif", "photo.jpg",
])
def test_mufac_bad_file_name_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name!r}.*does not follow"):
        faces.mufac_person(name)


def test_mufac_loads_tables_images_and_people(tmp_path: Path) -> None:
    root = write_mufac(tmp_path)
    ds = faces.load_mufac(tmp_path)
    assert ds.name == "mufac" and ds.num_classes == 8 and ds.classes[0] == "a (0-6 years)"
    assert ds.train_x.shape == (12 * SHOTS, 3, 128, 128) and ds.train_x.dtype == torch.uint8
    assert ds.val_x.shape == (2 * SHOTS, 3, 128, 128) and ds.test_x.shape == (2 * SHOTS, 3, 128, 128)
    assert ds.has_fixed_val and ds.leakage_audit
    for split, x, y, groups in (("train", ds.train_x, ds.train_y, ds.train_groups),
                                ("val", ds.val_x, ds.val_y, ds.val_groups),
                                ("test", ds.test_x, ds.test_y, ds.test_groups)):
        rows = table_rows(root, split)
        assert y.tolist() == ["abcdefgh".index(r["age_class"]) for r in rows]
        assert [ds.group_names[g] for g in groups.tolist()] == [f"{r['family_id']}_{r['person_id']}" for r in rows]
        folder = root / faces.MUFAC_TABLES[split][1]
        for i in (0, len(rows) - 1):  # decoded exactly as PIL decodes the file
            assert np.array_equal(x[i].numpy(), decoded(folder / rows[i]["image_path"]))
    assert len(ds.group_names) == 16 and len(set(ds.group_names)) == 16
    assert load_dataset("mufac", tmp_path) is load_dataset("mufac", tmp_path)  # loaded once per process


def test_mufac_minimal_columns_and_other_sizes(tmp_path: Path) -> None:
    """Only image_path and age_class are required; a non-128 image is resized to 128×128."""
    root = write_mufac(tmp_path)
    for split in ("train", "val", "test"):
        rewrite_table(root, split, table_rows(root, split), columns=["image_path", "age_class"])
    first = root / "train_images" / table_rows(root, "train")[0]["image_path"]
    face_like(np.random.default_rng(5), size=256).save(first, quality=95)
    ds = faces.load_mufac(tmp_path)
    assert ds.train_x.shape[1:] == (3, 128, 128) and ds.train_groups is not None


def test_mufac_absent_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataMissing) as err:
        faces.load_mufac(tmp_path)
    message = str(err.value)
    assert "MUFAC not found" in message and str(tmp_path) in message
    assert "ndb796/MachineUnlearning" in message and "custom_korean_family_dataset_resolution_128.zip" in message
    assert "--data-root" in message


def test_mufac_missing_image_file_is_named(tmp_path: Path) -> None:
    root = write_mufac(tmp_path)
    name = table_rows(root, "val")[3]["image_path"]
    (root / "val_images" / name).unlink()
    with pytest.raises(DataMissing, match=f"1 of 10 image files listed are missing:\n.*{name}"):
        faces.load_mufac(tmp_path)


def test_mufac_missing_table_or_folder(tmp_path: Path) -> None:
    root = write_mufac(tmp_path)
    (root / "custom_test_dataset.csv").unlink()
    with pytest.raises(DataMissing, match="custom_test_dataset.csv is missing"):
        faces.load_mufac(tmp_path)
    root = write_mufac(tmp_path / "again")
    shutil.rmtree(root / "val_images")
    with pytest.raises(DataMissing, match="image folder .*val_images is missing"):
        faces.load_mufac(tmp_path / "again")


def test_mufac_wrong_columns_are_named(tmp_path: Path) -> None:
    root = write_mufac(tmp_path)
    rows = [{"": r[""], "path": r["image_path"], "age": r["age_class"]} for r in table_rows(root, "train")]
    rewrite_table(root, "train", rows, columns=["", "path", "age"])
    with pytest.raises(DataMissing, match=r"custom_train_dataset.csv: missing column\(s\) \['image_path', 'age_class'\]; found \['', 'path', 'age'\]"):
        faces.load_mufac(tmp_path)


@pytest.mark.parametrize("column, value, match", [
    ("age_class", "z", "line 4: age_class 'z'.*not one of a-h"),
    ("image_path", "IMG_0001.jpg", "line 4: MUFAC image name 'IMG_0001.jpg' does not follow"),
    ("person_id", "GM", "line 4: person_id 'GM' disagrees with the file name"),
])
def test_mufac_bad_rows_are_clear_errors(tmp_path: Path, column: str, value: str, match: str) -> None:
    root = write_mufac(tmp_path)
    rows = table_rows(root, "train")
    rows[2][column] = value
    rewrite_table(root, "train", rows)
    with pytest.raises(DataMissing, match=match):
        faces.load_mufac(tmp_path)


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    root = write_mufac(tmp_path)
    name = table_rows(root, "test")[0]["image_path"]
    (root / "test_images" / name).write_bytes(b"not a jpeg")
    with pytest.raises(DataMissing, match=f"cannot decode image .*{name}"):
        faces.load_mufac(tmp_path)


# --------------------------------------------------------------------------- MUFAC: splits


def people_of(td, split: str) -> set[int]:
    ds = td.dataset
    split_obj = getattr(td, split)
    index = {k.tobytes(): i for i, k in enumerate(perceptual_hashes(ds.train_x))}
    return {int(ds.train_groups[index[k.tobytes()]]) for k in perceptual_hashes(split_obj.x)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identity_forgetting_keeps_people_whole(tmp_path: Path, seed: int) -> None:
    write_mufac(tmp_path)
    task = mufac_task(ForgetRule("identities", fraction=0.25))
    td = build_task_data(task, seed, str(tmp_path))
    forget_people, retain_people = people_of(td, "forget"), people_of(td, "retain")
    assert len(forget_people) == 3 and len(retain_people) == 9  # round(0.25 · 12) people
    assert not forget_people & retain_people
    assert len(td.forget) == 3 * SHOTS and len(td.retain) == 9 * SHOTS  # every image of each person
    assert len(td.val) == 2 * SHOTS and torch.equal(td.val.x, td.dataset.val_x)  # the fixed validation table
    assert torch.equal(td.test.x, td.dataset.test_x)
    assert td.audit["people"] == {"forget": 3, "retain": 9, "val": 2, "test": 2}
    assert td.audit["duplicates_dropped"] == {"train": 0, "val": 0, "test": 0}
    assert td.audit["people_dropped"] == {"val": 0, "test": 0}
    again = build_task_data(task, seed, str(tmp_path))
    assert torch.equal(again.forget.x, td.forget.x) and again.split_hash == td.split_hash


def test_identity_selection_depends_on_the_seed(tmp_path: Path) -> None:
    write_mufac(tmp_path)
    task = mufac_task(ForgetRule("identities", fraction=0.25))
    chosen = {frozenset(people_of(build_task_data(task, s, str(tmp_path)), "forget")) for s in range(4)}
    assert len(chosen) > 1


def test_identity_forgetting_shares_the_original_across_rules(tmp_path: Path) -> None:
    """The original's training set (the pool) does not depend on the forget rule."""
    write_mufac(tmp_path)
    a = build_task_data(mufac_task(ForgetRule("identities", fraction=0.25)), 0, str(tmp_path))
    b = build_task_data(mufac_task(ForgetRule("identities", rows=7), name="test-mufac-rows"), 0, str(tmp_path))
    assert torch.equal(a.train.x, b.train.x) and a.val_hash == b.val_hash and a.split_hash != b.split_hash


def test_first_rows_rule_forgets_their_people_whole(tmp_path: Path) -> None:
    """Rows 1-7 hold person 1's five images and two of person 2's: both people are forgotten whole."""
    write_mufac(tmp_path)
    td = build_task_data(mufac_task(ForgetRule("identities", rows=7), name="test-mufac-rows"), 0, str(tmp_path))
    ds = td.dataset
    assert torch.equal(td.forget.x, ds.train_x[:2 * SHOTS]) and torch.equal(td.retain.x, ds.train_x[2 * SHOTS:])
    assert td.audit["first_rows"] == {"rows": 7, "forget_images_in_first_rows": 7, "added_to_complete_people": 3,
                                      "first_rows_not_forgotten": 0}
    assert td.forget_classes == () and "first 7 training rows" in td.audit["forget_rule"]


def test_registered_paper_split_needs_more_rows_than_the_fixture(tmp_path: Path) -> None:
    write_mufac(tmp_path)
    with pytest.raises(ValueError, match="first 1500 rows are the whole training table"):
        build_task_data(get_task("mufac-age-paper"), 0, str(tmp_path))


def copy_image(root: Path, src: tuple[str, int], dst: tuple[str, int]) -> None:
    """Overwrite the image of table row dst with the file of row src (an exact duplicate)."""
    (s_split, s_row), (d_split, d_row) = src, dst
    s = root / faces.MUFAC_TABLES[s_split][1] / table_rows(root, s_split)[s_row]["image_path"]
    d = root / faces.MUFAC_TABLES[d_split][1] / table_rows(root, d_split)[d_row]["image_path"]
    shutil.copyfile(s, d)


def test_duplicates_are_dropped_from_the_later_split(tmp_path: Path) -> None:
    root = write_mufac(tmp_path)
    copy_image(root, ("train", 0), ("train", 12))  # person 1's image again under person 3 (a later row)
    copy_image(root, ("train", 30), ("val", 1))    # a training image in the validation table
    copy_image(root, ("val", 7), ("test", 2))      # a validation image in the test table
    copy_image(root, ("train", 59), ("test", 8))   # a training image in the test table
    task = mufac_task(ForgetRule("identities", fraction=0.25))
    td = build_task_data(task, 0, str(tmp_path))
    ds = td.dataset
    assert td.audit["duplicates_dropped"] == {"train": 1, "val": 1, "test": 2}
    assert len(td.train) == 12 * SHOTS - 1 and len(td.val) == 2 * SHOTS - 1 and len(td.test) == 2 * SHOTS - 2
    kept_train = {k.tobytes() for k in perceptual_hashes(td.train.x)}
    assert len(kept_train) == len(td.train)  # no duplicate left inside the pool
    assert torch.equal(ds.train_x[12], ds.train_x[0])
    assert torch.equal(td.train.x[:12], ds.train_x[:12]) and torch.equal(td.train.x[12:], ds.train_x[13:])  # row 12 (later) dropped
    hashes = {name: {k.tobytes() for k in perceptual_hashes(getattr(td, name).x)} for name in ("forget", "retain", "val", "test")}
    names = list(hashes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not hashes[a] & hashes[b], (a, b)
    assert build_task_data(task, 0, str(tmp_path)).split_hash == td.split_hash  # deterministic
    text = format_audit(td.audit)
    assert f"dropped (later split; 128-bit dHash+aHash within {HASH_MAX_DISTANCE} bits): train 1, val 1, test 2" in text


def test_near_duplicates_reencoded_are_found_and_same_person_copies_kept(tmp_path: Path) -> None:
    root = write_mufac(tmp_path)
    rows = {split: table_rows(root, split) for split in ("train", "val")}
    source = root / "train_images" / rows["train"][20]["image_path"]
    with Image.open(source) as im:  # a training photo re-encoded at JPEG quality 50 in the validation table
        im.save(root / "val_images" / rows["val"][4]["image_path"], quality=50)
    copy_image(root, ("train", 40), ("train", 41))  # the same person twice: not leakage, kept
    td = build_task_data(mufac_task(ForgetRule("identities", fraction=0.25)), 0, str(tmp_path))
    assert td.dataset.val_x[4].ne(td.dataset.train_x[20]).any()  # not pixel-identical
    assert td.audit["duplicates_dropped"] == {"train": 0, "val": 1, "test": 0}
    assert len(td.train) == 12 * SHOTS and len(td.val) == 2 * SHOTS - 1


def test_near_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2**63, (40, 2), dtype=np.uint64)
    a[7] = a[3] ^ np.array([0b101, 1 << 40], dtype=np.uint64)  # 3 bits from row 3
    a[30] = a[3] ^ np.array([0b1111111, 0], dtype=np.uint64)  # 7 bits: too far
    b = a[[3, 7, 12]] ^ np.array([1, 0], dtype=np.uint64)
    popcount = lambda u, v: sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(u, v))  # noqa: E731
    within = {(i, j) for i in range(40) for j in range(i + 1, 40) if popcount(a[i], a[j]) <= HASH_MAX_DISTANCE}
    across = {(i, j) for i in range(40) for j in range(3) if popcount(a[i], b[j]) <= HASH_MAX_DISTANCE}
    assert {tuple(p) for p in near_pairs(a, chunk=16).tolist()} == within and (3, 7) in within and (3, 30) not in within
    assert {tuple(p) for p in near_pairs(a, b).tolist()} == across


def test_a_person_in_two_tables_is_dropped_from_the_later(tmp_path: Path) -> None:
    people = {**PEOPLE, "test": [("F0851", "S", 12, "b"), ("F0801", "M", 53, "f")]}  # F0801_M also in val
    write_mufac(tmp_path, people=people)
    td = build_task_data(mufac_task(ForgetRule("identities", fraction=0.25)), 0, str(tmp_path))
    assert td.audit["people_dropped"] == {"val": 0, "test": SHOTS}
    assert len(td.test) == SHOTS and td.audit["people"]["test"] == 1


def test_audit_report_and_the_audit_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_mufac(tmp_path)
    report = build_task_data(get_task("mufac-age-identity"), 0, str(tmp_path)).audit
    assert report["enforced"] and report["sizes"]["val"] == 2 * SHOTS
    assert report["validation"].startswith("fixed")
    text = format_audit(report)
    assert "leakage audit of mufac-age-identity" in text and "verified: no image and no person" in text
    assert cli.main(["audit", "mufac-age-identity", "--data-root", str(tmp_path), "--seeds", "0", "1"]) == 0
    seed1 = format_audit(build_task_data(get_task("mufac-age-identity"), 1, str(tmp_path)).audit)
    assert capsys.readouterr().out == f"{text}\n{seed1}\n" and "(seed 1," in seed1
    digits = build_task_data(get_task("digits-cnn-class"), 0).audit
    assert not digits["enforced"] and "not enforced" in format_audit(digits)


def test_fixed_validation_refuses_a_val_fraction(tmp_path: Path) -> None:
    write_mufac(tmp_path)
    task = dataclasses.replace(mufac_task(ForgetRule("identities", fraction=0.25)), val_fraction=0.1)
    with pytest.raises(ValueError, match="ships a fixed validation split.*val_fraction=0.0"):
        build_task_data(task, 0, str(tmp_path))


def test_a_dataset_with_identities_refuses_other_rules(tmp_path: Path) -> None:
    write_mufac(tmp_path)
    for rule in (ForgetRule("random", fraction=0.2), ForgetRule("classes", classes=(3,))):
        with pytest.raises(ValueError, match="would put people in both forget and retain"):
            build_task_data(mufac_task(rule), 0, str(tmp_path))


def test_identity_forgetting_needs_identities(tmp_path: Path) -> None:
    task = Task(name="t", description="TEST", dataset="digits", arch="digits_cnn",
                forget=ForgetRule("identities", fraction=0.2), recipe=TINY_RECIPE, version=1)
    with pytest.raises(ValueError, match="needs a dataset with a person identity"):
        build_task_data(task, 0)


def test_forget_rule_validation() -> None:
    with pytest.raises(ValueError, match="either fraction .* or rows"):
        ForgetRule("identities")
    with pytest.raises(ValueError, match="either fraction .* or rows"):
        ForgetRule("identities", fraction=0.1, rows=10)
    with pytest.raises(ValueError, match="rows .* identity forgetting only"):
        ForgetRule("random", fraction=0.1, rows=10)
    with pytest.raises(ValueError, match="fixed split seed applies to random forgetting only"):
        ForgetRule("identities", fraction=0.1, seed=3)
    with pytest.raises(ValueError, match="unknown forget kind"):
        ForgetRule("first_rows")  # type: ignore[arg-type]
    assert ForgetRule("random", fraction=0.3, seed=42).describe() == "30% of training images at random (fixed split, seed 42)"


# --------------------------------------------------------------------------- RAF-DB


def test_rafdb_loads_image_folders_as_three_gray_channels(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    root = write_raf(tmp_path)
    ds = faces.load_rafdb(tmp_path)
    assert ds.name == "rafdb" and ds.classes == tuple(f"{c} ({faces.RAF_LABEL_NAMES[c]})" for c in "1234567")
    assert ds.train_x.shape == (42, 3, 128, 128) and ds.test_x.shape == (14, 3, 128, 128)
    assert torch.equal(ds.train_x[:, 0], ds.train_x[:, 1]) and torch.equal(ds.train_x[:, 0], ds.train_x[:, 2])
    assert ds.train_groups is None and not ds.has_fixed_val and ds.leakage_audit
    reference = ImageFolder(str(root / "train"))  # DLFD's loader: same order, same labels
    assert ds.train_y.tolist() == [c for _, c in reference.samples]
    path, _ = reference.samples[5]
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB").resize((128, 128), Image.BILINEAR).convert("L"))
    assert np.array_equal(ds.train_x[5, 0].numpy(), expected)


def test_rafdb_paper_split_reproduces_the_reference(tmp_path: Path) -> None:
    """DLFD's RAF_loader.py: random.seed(42); shuffle; 10% validation; of the rest int(0.7·n) retain."""
    write_raf(tmp_path)
    td = build_task_data(get_task("raf-emotion-paper"), 0, str(tmp_path))
    random.seed(42)
    indices = list(range(42))
    random.shuffle(indices)
    num_val = int(42 * 0.1)
    num_retain = int((42 - num_val) * 0.7)
    x = td.dataset.train_x
    assert torch.equal(td.val.x, x[sorted(indices[:num_val])])
    assert torch.equal(td.retain.x, x[sorted(indices[num_val:num_val + num_retain])])
    assert torch.equal(td.forget.x, x[sorted(indices[num_val + num_retain:])])
    assert "people" not in td.audit  # RAF-DB carries no identities
    assert "people: not audited" in format_audit(td.audit)
    assert build_task_data(get_task("raf-emotion-paper"), 1, str(tmp_path)).split_hash == td.split_hash  # fixed split
    assert torch.equal(reference_shuffle(42, 42), torch.tensor(indices))


def test_rafdb_errors(tmp_path: Path) -> None:
    with pytest.raises(DataMissing, match="(?s)RAF-DB \\(basic\\) not found.*whdeng.cn/RAF"):
        faces.load_rafdb(tmp_path / "nothing")
    write_raf(tmp_path / "six", classes=tuple("123456"))
    with pytest.raises(DataMissing, match="has 6 class folders"):
        faces.load_rafdb(tmp_path / "six")
    root = write_raf(tmp_path / "mismatch")
    (root / "test" / "7").rename(root / "test" / "neutral")
    with pytest.raises(DataMissing, match="test has the class folders"):
        faces.load_rafdb(tmp_path / "mismatch")
    root = write_raf(tmp_path / "empty")
    for f in (root / "train" / "3").iterdir():
        f.unlink()
    with pytest.raises(DataMissing, match="RAF-DB folder .*train"):
        faces.load_rafdb(tmp_path / "empty")


# --------------------------------------------------------------------------- perceptual hash, dataset fields


def float_dhash_ahash(x: np.ndarray) -> np.ndarray:
    """An independent floating-point version (torch adaptive average pooling) of the same hashes
    (differences of more than HASH_TIE_LEVELS gray levels; float round-off, 1e-9, is a tie)."""
    tau = HASH_TIE_LEVELS + 1e-9
    g = torch.from_numpy(0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    d = torch.nn.functional.adaptive_avg_pool2d(g, (8, 9))[:, 0]
    a = torch.nn.functional.adaptive_avg_pool2d(g, (8, 8))[:, 0]
    d_bits = (d[:, :, 1:] - d[:, :, :-1] > tau).reshape(len(x), 64)
    a_bits = (a - g.mean(dim=(1, 2, 3))[:, None, None] > tau).reshape(len(x), 64)
    return np.packbits(torch.cat([d_bits, a_bits], 1).numpy(), axis=1)


def test_perceptual_hash_matches_a_float_implementation_and_survives_reencoding(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = np.stack([np.asarray(face_like(rng)).transpose(2, 0, 1) for _ in range(12)])
    ours = perceptual_hashes(torch.from_numpy(images))
    assert ours.shape == (12, 16) and np.array_equal(ours, float_dhash_ahash(images.astype(np.float64)))
    assert len({k.tobytes() for k in ours}) == 12  # different faces, different hashes
    Image.fromarray(images[4].transpose(1, 2, 0)).save(tmp_path / "a.jpg", quality=75)
    Image.fromarray(images[4].transpose(1, 2, 0)).save(tmp_path / "a.png")
    again = np.stack([decoded(tmp_path / "a.jpg"), decoded(tmp_path / "a.png")])
    assert (perceptual_hashes(torch.from_numpy(again)) == ours[4]).all()


def test_content_hash_covers_the_optional_fields() -> None:
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    plain = ImageDataset("t", x, y, x, y, ("a", "b"), "TEST")
    groups = dict(train_groups=torch.tensor([0, 0, 1, 1]), group_names=("p", "q"))
    with_groups = ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", **groups)
    other_groups = ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", train_groups=torch.tensor([0, 1, 1, 1]), group_names=("p", "q"))
    with_val = ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", val_x=x[:2], val_y=y[:2])
    audited = ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", leakage_audit=True)
    hashes = [d.content_hash() for d in (plain, with_groups, other_groups, with_val, audited)]
    assert len(set(hashes)) == 5
    import hashlib
    h = hashlib.sha256()  # datasets without the optional fields keep their hash (cached references stay valid)
    for t in (x, y, x, y):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    assert plain.content_hash() == h.hexdigest()


def test_image_dataset_checks_the_optional_fields() -> None:
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="both val_x and val_y"):
        ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", val_x=x)
    with pytest.raises(ValueError, match="needs group_names"):
        ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", train_groups=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="identity ids outside"):
        ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", train_groups=torch.tensor([0, 0, 1, 2]), group_names=("p", "q"))
    with pytest.raises(ValueError, match="val images are"):
        ImageDataset("t", x, y, x, y, ("a", "b"), "TEST", val_x=torch.zeros(2, 3, 4, 4, dtype=torch.uint8), val_y=y[:2])


# --------------------------------------------------------------------------- tasks, applicability, end to end


def test_face_tasks_are_registered() -> None:
    assert SUITES["faces"] == ("mufac-age-identity", "mufac-age-paper", "raf-emotion-paper")
    for name in SUITES["faces"]:
        task = TASKS.get(name)
        assert task.primary_metric == "nomus" and task.arch == "resnet18_face"
    assert TASKS.get("mufac-age-identity").forget == ForgetRule("identities", fraction=0.15)
    assert TASKS.get("mufac-age-paper").forget == ForgetRule("identities", rows=1500)
    assert TASKS.get("raf-emotion-paper").forget == ForgetRule("random", fraction=0.3, seed=42)
    assert TASKS.get("raf-emotion-paper").val_fraction == 0.1 and TASKS.get("mufac-age-paper").val_fraction == 0.0


def test_every_method_runs_on_the_face_tasks_or_says_why_not() -> None:
    plan = make_plan(list(SUITES["faces"]), list_methods(), [0])
    planned = {(r.task.name, r.method) for r in plan.runs}
    skipped = {(t, m): why for t, m, why in plan.not_applicable}
    for task in SUITES["faces"]:
        for method in list_methods():
            assert ((task, method) in planned) != ((task, method) in skipped), (task, method)
            if (task, method) in skipped:
                assert "applies to classes forgetting only" in skipped[(task, method)]
    assert ("mufac-age-identity", "dlfd") in planned and ("raf-emotion-paper", "scar") in planned


@pytest.mark.slow
def test_mufac_identity_end_to_end_with_the_python_api(tmp_path: Path) -> None:
    """ResNet-18 at 128×128 for one epoch on 60 images: original, oracle, finetune, rows with nomus."""
    write_mufac(tmp_path / "data")
    task = mufac_task(ForgetRule("identities", fraction=0.25))
    rows = bench.run(task, ["original", "finetune"], seeds=[0], hp={"finetune.epochs": 1, "finetune.batch_size": 16},
                     results=tmp_path / "results", leaderboard=tmp_path / "lb", cache=tmp_path / "cache",
                     data_root=tmp_path / "data", progress=False)
    assert rows and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    value = {(r["method"], r["metric"]): r["value"] for r in rows}
    for method in ("original", "oracle", "finetune"):
        nomus = value[(method, "nomus")]
        assert 0.0 <= nomus <= 1.0
        expected = 0.5 * value[(method, "test_accuracy")] + 0.5 * (1 - 2 * abs(value[(method, "mia_cv_accuracy")] - 0.5))
        assert nomus == pytest.approx(expected)
    page = (tmp_path / "lb" / f"{task.name}.md").read_text()
    assert "nomus" in page


@pytest.mark.slow
def test_bench_run_mufac_age_identity_dlfd_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The acceptance command, `bench run mufac-age-identity dlfd --data-root DIR --seeds 0`, on the
    fixture, with the registered task's recipe cut to one epoch (ResNet-18 on CPU)."""
    write_mufac(tmp_path / "data")  # 12 training people: 15% → 2 people, 10 forget images
    registered = TASKS.get("mufac-age-identity")
    monkeypatch.setitem(TASKS._entries, "mufac-age-identity", dataclasses.replace(registered, recipe=TINY_RECIPE))
    code = cli.main(["run", "mufac-age-identity", "dlfd", "--data-root", str(tmp_path / "data"), "--seeds", "0",
                     "--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb"),
                     "--cache", str(tmp_path / "cache"), "--no-progress",
                     "--hp", "perturbation_steps=1", "batch_size=16"])
    assert code == 0, capsys.readouterr()
    from bench.results import read_store

    df = read_store(tmp_path / "results")
    dlfd = df[(df["method"] == "dlfd") & (df["metric"] == "nomus")]
    assert len(dlfd) == 1 and dlfd["status"].iloc[0] == "ok" and 0.0 <= dlfd["value"].iloc[0] <= 1.0
    assert "nomus" in (tmp_path / "lb" / "mufac-age-identity.md").read_text()
