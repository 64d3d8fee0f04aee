"""Submission CSV: RLE round trips on the real nuclei masks, Kaggle layouts read back by podium's
own RLE table reader, empty values, deterministic order, sharded parts merged = one writer."""

import csv
import random

import cv2
import numpy as np
import pytest
import torch

from podium.datasets.csv_rle import RleTable
from podium.datasets.readers import read_mask
from podium.datasets.rle import rle_decode
from podium.errors import PodiumError
from podium.inference.submission import SubmissionWriter


@pytest.fixture(scope="module")
def nuclei_masks(nuclei_data):
    """{name: bool H×W} of the real nuclei tiles (0/255 PNGs), some of them nearly empty."""
    paths = sorted((nuclei_data / "masks").glob("*.png"))[:40]
    return {path.stem: read_mask(path) > 0 for path in paths}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_rle_round_trip_on_real_masks(tmp_path, nuclei_masks):
    with SubmissionWriter(tmp_path / "sub.csv") as writer:
        for name, mask in nuclei_masks.items():
            writer.add(name, (mask * 255).astype(np.uint8))  # 0/255 PNG-style masks
    rows = _rows(tmp_path / "sub.csv")
    assert rows[0] == ["ImageId", "EncodedPixels"] and len(rows) == len(nuclei_masks) + 1
    assert sum(mask.any() for mask in nuclei_masks.values()) > 30
    for name, rle in rows[1:]:
        np.testing.assert_array_equal(rle_decode(rle, (128, 128)), nuclei_masks[name])


def test_instances_one_row_per_nucleus(tmp_path, nuclei_masks):
    name, mask = max(nuclei_masks.items(), key=lambda item: item[1].sum())
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    with SubmissionWriter(tmp_path / "sub.csv", instances=True) as writer:
        writer.add(name, mask)
        writer.add("empty", np.zeros_like(mask))
    rows = _rows(tmp_path / "sub.csv")[1:]
    assert rows[0] == ["empty", ""] and len(rows) == count  # count - 1 nuclei + the empty image
    decoded = [rle_decode(rle, mask.shape) for _, rle in rows[1:]]
    np.testing.assert_array_equal(np.sum(decoded, axis=0), mask)  # disjoint, and together the mask
    firsts = [int(rle.split()[0]) for _, rle in rows[1:]]
    assert firsts == sorted(firsts)  # ordered by their first (column-major) pixel
    assert (
        RleTable(tmp_path / "sub.csv").mask(name, mask.shape).astype(bool).tolist() == mask.tolist()
    )


def test_empty_value_and_row_major_order(tmp_path):
    mask = np.array([[0, 1, 1], [0, 1, 0], [1, 0, 0]], np.uint8)
    with SubmissionWriter(tmp_path / "sub.csv", empty="-1", rle_order="C") as writer:
        writer.add("a", mask)
        writer.add("b", np.zeros((3, 3)))
    assert (tmp_path / "sub.csv").read_text() == "ImageId,EncodedPixels\na,2 2 5 1 7 1\nb,-1\n"


def test_row_order_does_not_depend_on_add_order(tmp_path):
    rng = np.random.default_rng(0)
    masks = {f"img{i}": rng.random((2, 6, 5)) > 0.7 for i in (1, 2, 10, 11, 100)}
    texts = []
    for seed in range(3):
        names = list(masks)
        random.Random(seed).shuffle(names)
        path = tmp_path / f"sub{seed}.csv"
        with SubmissionWriter(
            path, name_format="{name}_{class}", class_names=["Fish", "Flower"]
        ) as writer:
            for name in names:
                writer.add(name, torch.from_numpy(masks[name]))  # tensors are accepted too
        texts.append(path.read_text())
    assert texts[0] == texts[1] == texts[2]
    ids = [row[0] for row in _rows(tmp_path / "sub0.csv")[1:]]
    assert (
        ids[:4] == ["img1_Fish", "img1_Flower", "img2_Fish", "img2_Flower"]
        and ids[-1] == "img100_Flower"
    )


def test_merge_of_parts_equals_one_writer(tmp_path, nuclei_masks):
    names = list(nuclei_masks)
    with SubmissionWriter(tmp_path / "single.csv", instances=True) as writer:
        for name in names:
            writer.add(name, nuclei_masks[name])
    parts = []
    for rank in range(3):  # names split like sharded ranks (i mod 3), each part written alone
        parts.append(tmp_path / f"part{rank}.csv")
        with SubmissionWriter(parts[-1], instances=True) as writer:
            for name in names[rank::3]:
                writer.add(name, nuclei_masks[name])
    SubmissionWriter.merge(parts, tmp_path / "merged.csv")
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()


def test_clouds_image_label_layout_reads_back(tmp_path):
    rng = np.random.default_rng(1)
    masks = {name: (rng.random((4, 7, 9)) > 0.6).astype(np.uint8) for name in ("a", "b")}
    classes = ["Fish", "Flower", "Gravel", "Sugar"]
    with SubmissionWriter(
        tmp_path / "sub.csv",
        columns=("Image_Label", "EncodedPixels"),
        name_format="{name}.jpg_{class}",
        class_names=classes,
    ) as writer:
        for name, mask in masks.items():
            writer.add(name, mask)
    assert (
        _rows(tmp_path / "sub.csv")[1][0] == "a.jpg_Fish" and len(_rows(tmp_path / "sub.csv")) == 9
    )
    table = RleTable(tmp_path / "sub.csv", class_names=classes)
    for name, mask in masks.items():
        np.testing.assert_array_equal(table.mask(name, (7, 9)).transpose(2, 0, 1), mask)


def test_severstal_class_id_layout_and_templates(tmp_path):
    mask = np.zeros((3, 4, 4), np.uint8)
    mask[2, 0, 0] = 1
    with SubmissionWriter(
        tmp_path / "a.csv", columns=("ImageId", "ClassId", "EncodedPixels")
    ) as writer:
        writer.add("s", mask)
    assert (
        tmp_path / "a.csv"
    ).read_text() == "ImageId,ClassId,EncodedPixels\ns,1,\ns,2,\ns,3,1 1\n"
    assert RleTable(tmp_path / "a.csv").mask("s", (4, 4))[..., 2].sum() == 1
    templates = {"ImageId": "{name}.jpg", "EncodedPixels": "{rle}", "ClassId": "{class_id}"}
    with SubmissionWriter(tmp_path / "b.csv", columns=templates) as writer:
        writer.add("s", mask)
    assert (
        tmp_path / "b.csv"
    ).read_text() == "ImageId,EncodedPixels,ClassId\ns.jpg,,1\ns.jpg,,2\ns.jpg,1 1,3\n"


def test_multiclass_one_row_per_class_except_background(tmp_path):
    labels = np.array([[0, 1], [2, 2]], np.uint8)
    with SubmissionWriter(
        tmp_path / "sub.csv",
        name_format="{name}_{class}",
        mode="multiclass",
        class_names=["background", "car", "road", "sky"],
    ) as writer:
        writer.add("x", labels)
    assert _rows(tmp_path / "sub.csv")[1:] == [
        ["x_car", "3 1"],
        ["x_road", "2 1 4 1"],
        ["x_sky", ""],
    ]


def test_nothing_is_written_until_close_or_on_error(tmp_path):
    writer = SubmissionWriter(tmp_path / "sub.csv")
    writer.add("a", np.ones((2, 2)))
    assert not (tmp_path / "sub.csv").exists()
    writer.close()
    assert (tmp_path / "sub.csv").read_text() == "ImageId,EncodedPixels\na,1 4\n"
    with pytest.raises(PodiumError, match="already written"):
        writer.add("b", np.ones((2, 2)))
    with pytest.raises(RuntimeError):
        with SubmissionWriter(tmp_path / "crash.csv") as crashing:
            crashing.add("a", np.ones((2, 2)))
            raise RuntimeError("prediction crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sub.csv"
    ]  # no partial file, no temp file


@pytest.mark.parametrize(
    "kwargs, mask, message",
    [
        ({}, np.ones((2, 3, 3)), "no class field"),
        (
            {"mode": "binary"},
            np.ones((2, 3, 3)),
            r"shape \(2, 3, 3\); expected H×W for a binary submission",
        ),
        ({"name_format": "{name}_{clas}"}, None, 'uses {clas} \\(did you mean "class"\\?\\)'),
        ({"name_format": "{name"}, None, "bad template"),
        ({"columns": ("ImageId",)}, None, "2 names \\(id, RLE\\), 3 names"),
        ({"columns": {"ImageId": "{name}"}}, None, "exactly one column with {rle}"),
        ({"mode": "multiclass"}, None, "needs class_names with the background first"),
        (
            {"mode": "multiclass", "class_names": ["bg", "a"], "name_format": "{name}_{class}"},
            np.full((2, 2), 5),
            "class indices 5..5; expected 0..1",
        ),
        (
            {"class_names": ["a", "b", "c"], "name_format": "{name}_{class}"},
            np.ones((2, 3, 3)),
            "2 channels but class_names lists 3",
        ),
        ({"rle_order": "X"}, None, 'RLE order must be "F"'),
    ],
)
def test_bad_input(tmp_path, kwargs, mask, message):
    with pytest.raises(PodiumError, match=message):
        writer = SubmissionWriter(tmp_path / "sub.csv", **kwargs)
        writer.add("a", mask)


def test_duplicates_and_merge_errors(tmp_path):
    writer = SubmissionWriter(tmp_path / "p0.csv")
    writer.add("a", np.ones((2, 2)))
    with pytest.raises(PodiumError, match="image a was added .* twice"):
        writer.add("a", np.ones((2, 2)))
    writer.close()
    with SubmissionWriter(tmp_path / "p1.csv") as other:
        other.add("a", np.zeros((2, 2)))
    with pytest.raises(PodiumError, match="ImageId a is in both .*p0.csv and .*p1.csv"):
        SubmissionWriter.merge([tmp_path / "p0.csv", tmp_path / "p1.csv"], tmp_path / "sub.csv")
    (tmp_path / "p2.csv").write_text("Image_Label,EncodedPixels\n")
    with pytest.raises(
        PodiumError, match="has columns \\['Image_Label', 'EncodedPixels'\\] but .*p0.csv has"
    ):
        SubmissionWriter.merge([tmp_path / "p0.csv", tmp_path / "p2.csv"], tmp_path / "sub.csv")
    with pytest.raises(PodiumError, match="part .*p9.csv does not exist"):
        SubmissionWriter.merge([tmp_path / "p9.csv"], tmp_path / "sub.csv")
    assert not (tmp_path / "sub.csv").exists()
