"""`podium folds` and `podium stats` on small synthetic folders (8- and 16-bit), checked against
numpy."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from podium.cli.main import main
from podium.datasets.folds import coverage_strata, make_folds
from podium.datasets.normalize import build_normalizer
from podium.datasets.split import read_split, select_names
from podium.datasets.stats import RunningMoments, compute_stats, write_stats
from podium.errors import PodiumError

SIZE = 16


def _write_folder(root, count=60, groups=12, empty_every=4, classes=1, seed=0):
    """count 16×16 8-bit images + masks of varied coverage (every `empty_every`-th empty) and
    split.csv name,split,patient,site (patient = group of count/groups images)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(count):
        name = f"img{i:03d}"
        cv2.imwrite(
            str(root / "images" / f"{name}.png"), rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
        )
        mask = np.zeros((SIZE, SIZE), np.uint8)
        if i % empty_every:
            side = 1 + (i * 7) % 15
            label = 1 + (i // 3) % classes if classes > 1 else 255
            mask[:side, : 1 + (i * 5) % 16] = label
            if classes > 2 and i % 5 == 0:
                mask[-2:, -2:] = classes - 1
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
        rows.append(
            {
                "name": name,
                "split": "train",
                "patient": f"p{i % groups:02d}",
                "site": "a" if i % 2 else "b",
            }
        )
    rows += [{"name": "test000", "split": "test", "patient": "p99", "site": "a"}]
    cv2.imwrite(str(root / "images" / "test000.png"), np.zeros((SIZE, SIZE), np.uint8))
    cv2.imwrite(str(root / "masks" / "test000.png"), np.zeros((SIZE, SIZE), np.uint8))
    pd.DataFrame(rows).to_csv(root / "split.csv", index=False)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("folds") / "data")


# ---------------------------------------------------------------- folds
def test_coverage_folds_balanced_and_stratified(folder):
    df = make_folds(folder, k=5, seed=3)
    train = df[df["split"] == "train"]
    sizes = train["fold"].value_counts().sort_index()
    assert list(sizes.index) == [0, 1, 2, 3, 4] and sizes.max() - sizes.min() <= 1
    assert df.loc[df["split"] == "test", "fold"].tolist() == [-1]  # other splits stay out
    assert list(df.columns) == ["name", "split", "fold", "patient", "site"]  # extra columns kept
    coverage = pd.Series(df.attrs["coverage"])
    per_fold = train.assign(coverage=train["name"].map(coverage)).groupby("fold")["coverage"]
    empties = per_fold.apply(lambda c: int((c == 0).sum()))
    assert empties.max() - empties.min() <= 1  # 15 empty masks: 3 per fold
    assert per_fold.mean().max() - per_fold.mean().min() < 0.1  # similar coverage distribution
    assert (per_fold.median().max() - per_fold.median().min()) < 0.15


def test_folds_deterministic_for_a_seed(folder):
    a, b, c = (
        make_folds(folder, k=5, seed=1),
        make_folds(folder, k=5, seed=1),
        make_folds(folder, k=5, seed=2),
    )
    pd.testing.assert_frame_equal(a, b)
    assert not a["fold"].equals(c["fold"])


@pytest.mark.parametrize("stratify", ["coverage", "none"])
def test_groups_never_span_folds(folder, tmp_path, stratify):
    df = make_folds(folder, k=4, stratify=stratify, group="patient", seed=0)
    train = df[df["fold"] >= 0]
    assert (train.groupby("patient")["fold"].nunique() == 1).all()
    assert train["fold"].nunique() == 4
    # the same grouping from a separate file
    groups = tmp_path / "groups.csv"
    df[["name", "patient"]].rename(columns={"patient": "subject"}).to_csv(groups, index=False)
    other = make_folds(folder, k=4, stratify=stratify, group="subject", groups_file=groups, seed=0)
    assert (other[other["fold"] >= 0].groupby(df["patient"])["fold"].nunique() == 1).all()


def test_classes_stratification(tmp_path):
    root = _write_folder(tmp_path / "multi", count=60, classes=3)
    df = make_folds(root, k=3, stratify="classes", seed=0, split="train")
    train = df[df["fold"] >= 0]
    assert train["fold"].value_counts().max() - train["fold"].value_counts().min() <= 1


def test_classes_stratification_balances_every_class_combination(tmp_path):
    """Each class combination (counts not multiples of k, every one >= k so none is pooled) is
    spread over the folds with per-fold counts differing by at most one; the combinations are
    read back from the mask files by hand."""
    combinations = {(): 7, (1,): 8, (2,): 7, (1, 2): 10, (3,): 5, (1, 3): 4, (1, 2, 3): 11}
    root = tmp_path / "combos"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    names = [f"img{i:03d}" for i in range(sum(combinations.values()))]
    order = rng.permutation(len(names))  # combinations interleaved in name order
    labels = [combo for combo, count in combinations.items() for _ in range(count)]
    for name, index in zip(names, order):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        for label in labels[index]:
            mask[label * 3 : label * 3 + 3, : 2 + index % 12] = label
        cv2.imwrite(
            str(root / "images" / f"{name}.png"), rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
        )
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
    k = 3
    df = make_folds(root, k=k, stratify="classes", seed=0)
    present = {
        n: "+".join(
            str(v)
            for v in np.unique(cv2.imread(str(root / "masks" / f"{n}.png"), cv2.IMREAD_UNCHANGED))
            if v
        )
        or "none"
        for n in names
    }
    assert sorted(pd.Series(present).value_counts().items()) == sorted(
        ("+".join(map(str, combo)) or "none", count) for combo, count in combinations.items()
    )
    counts = pd.crosstab(df["name"].map(present), df["fold"])  # combination × fold
    assert list(counts.columns) == [0, 1, 2] and len(counts) == len(combinations)
    spread = counts.max(axis=1) - counts.min(axis=1)
    assert (spread <= 1).all(), counts


def test_folds_file_round_trips_through_read_split(folder, tmp_path):
    out = tmp_path / "folds.csv"
    assert (
        main(
            [
                "folds",
                str(folder),
                "--k",
                "5",
                "--group",
                "patient",
                "--seed",
                "42",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    # read_split looks in a folder: put the file next to the data under a custom name
    (folder / "folds_test.csv").write_text(out.read_text())
    table = read_split(folder, "folds_test.csv")
    assert set(table.columns) == {"name", "split", "fold", "patient", "site"}
    names = [select_names(table, split="train", fold=k) for k in range(5)]
    assert sum(map(len, names)) == 60 and not set(names[0]) & set(names[1])
    assert select_names(table, fold=-1) == ["test000"]


def test_coverage_strata_merge_small_bins():
    strata = coverage_strata(np.array([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), k=3, bins=5)
    assert min(np.unique(strata, return_counts=True)[1]) >= 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 1}, "--k must be an integer >= 2"),
        ({"stratify": "coverag"}, 'did you mean "coverage"'),
        ({"group": "patiant"}, '--group "patiant" is not a column.*did you mean "patient"'),
        ({"split": "trian"}, "--split 'trian' is not in split file.*did you mean"),
        ({"k": 100}, "cannot make 100 folds of 60"),
    ],
)
def test_folds_errors(folder, kwargs, message):
    with pytest.raises(PodiumError, match=message):
        make_folds(folder, **kwargs)


# ---------------------------------------------------------------- stats
def _stats_folder(root, dtype, channels, sizes):
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    high = np.iinfo(dtype).max
    images, masks = [], []
    for i, (h, w) in enumerate(sizes):
        image = rng.integers(0, high // (i + 1), (h, w, channels), dtype=dtype)
        tifffile.imwrite(root / "images" / f"n{i}.tif", image)
        mask = np.zeros((h, w), np.uint8)
        if i % 3:
            mask[: h // 2, : w // (i + 1)] = 1 + i % 2
        cv2.imwrite(str(root / "masks" / f"n{i}.png"), mask)
        images.append(image.reshape(-1, channels))
        masks.append(mask)
    return np.concatenate(images).astype(np.float64), masks


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint16, 1), (np.uint16, 2)])
def test_stats_match_numpy(tmp_path, dtype, channels):
    sizes = [(16, 16), (20, 12), (16, 16), (8, 30), (16, 16), (12, 12)]
    pixels, masks = _stats_folder(tmp_path / "d", dtype, channels, sizes)
    stats = compute_stats(tmp_path / "d", progress=False)
    dtype_max = float(np.iinfo(dtype).max)
    np.testing.assert_allclose(stats["raw"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["raw"]["std"], pixels.std(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(stats["raw"]["max"], pixels.max(axis=0))
    np.testing.assert_allclose(stats["scaled"]["mean"], pixels.mean(axis=0) / dtype_max, rtol=1e-12)
    assert stats["dtype_max"] == dtype_max and stats["normalize"]["max_value"] == dtype_max
    assert stats["sizes"] == {"16x16": 3, "20x12": 1, "8x30": 1, "12x12": 1}
    assert stats["images"] == 6 and stats["channels"] == channels and stats["pixels"] == len(pixels)
    labels = np.concatenate([m.ravel() for m in masks])
    assert stats["masks"]["empty"] == sum(not m.any() for m in masks) == 2
    for value in (0, 1, 2):
        assert stats["masks"]["classes"][str(value)]["pixels"] == int((labels == value).sum())
    assert stats["masks"]["foreground_fraction"] == pytest.approx((labels > 0).mean())


def test_running_moments_merge_is_exact_for_large_offsets():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(60000, 3, (1000, 1)) for _ in range(20)]
    moments = RunningMoments()
    for block in blocks:
        moments.update(block)
    everything = np.concatenate(blocks)
    np.testing.assert_allclose(moments.std, everything.std(axis=0), rtol=1e-9)


def test_stats_normalisation_equals_fixed_mode(tmp_path):
    _stats_folder(tmp_path / "d", np.uint16, 2, [(16, 16), (12, 20)])
    out = tmp_path / "stats.json"
    assert (
        main(["stats", str(tmp_path / "d"), "--out", str(out), "--max-value", "4095", "--quiet"])
        == 0
    )
    saved = json.loads(out.read_text())
    block = saved["normalize"]
    fixed = build_normalizer(
        {
            "mode": "fixed",
            "max_value": block["max_value"],
            "mean": block["mean"],
            "std": block["std"],
        }
    )
    from_stats = build_normalizer({"mode": "stats", "path": str(out)})
    image = np.random.default_rng(2).integers(0, 4096, (8, 8, 2), dtype=np.uint16)
    np.testing.assert_array_equal(from_stats(image), fixed(image))
    assert block["max_value"] == 4095
    # standardised with the data's own statistics: mean ≈ 0, std ≈ 1 over the data set
    pixels = np.concatenate(
        [
            from_stats(tifffile.imread(p)).reshape(-1, 2)
            for p in sorted((tmp_path / "d" / "images").iterdir())
        ]
    )
    np.testing.assert_allclose(pixels.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(pixels.std(axis=0), 1, atol=1e-4)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"mode": "stats"}, "needs path"),
        ({"mode": "stats", "path": "nowhere.json"}, "normalize.path nowhere.json does not exist"),
        (
            {"mode": "stats", "path": "x.json", "mean": [1]},
            'unknown key "mean" in normalize \\(mode stats\\)',
        ),
    ],
)
def test_stats_normalize_errors(spec, message):
    with pytest.raises(PodiumError, match=message):
        build_normalizer(spec)


def test_stats_file_without_normalize_block(tmp_path):
    path = tmp_path / "other.json"
    write_stats({"hello": 1}, path)
    with pytest.raises(PodiumError, match="no normalize block"):
        build_normalizer({"mode": "stats", "path": str(path)})


def test_stats_mixed_channels_is_an_error(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "d" / "images" / "a.tif", np.zeros((4, 4, 3), np.uint8))
    tifffile.imwrite(tmp_path / "d" / "images" / "b.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(PodiumError, match="b.tif has 1 channel.*earlier images have 3"):
        compute_stats(tmp_path / "d", progress=False)
