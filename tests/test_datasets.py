"""podium.datasets: readers, normalisation, transforms from YAML, splits, the image-folder
dataset."""

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from podium.datasets.builder import (
    build_segmentation_dataset,
    build_segmentation_datasets,
    check_data_keys,
)
from podium.datasets.image_folder import ImageFolderDataset
from podium.datasets.normalize import build_normalizer
from podium.datasets.readers import read_image, read_mask
from podium.datasets.split import read_split, select_names
from podium.datasets.transforms import build_transforms, transforms_to_dict
from podium.errors import PodiumError

RNG = np.random.default_rng(0)


def _random(shape, dtype):
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _write_png(path, rgb_or_grey):
    """Write with cv2, which expects BGR(A): convert so the file holds the given RGB(A) data."""
    array = rgb_or_grey
    if array.ndim == 3 and array.shape[-1] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), array)


# ---------------------------------------------------------------- readers
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_read_png_keeps_dtype_and_rgb_order(tmp_path, dtype, channels):
    data = _random((12, 10, channels), dtype)
    _write_png(tmp_path / "a.png", data[..., 0] if channels == 1 else data)
    image = read_image(tmp_path / "a.png")
    assert image.dtype == dtype and image.shape == (12, 10, channels)
    np.testing.assert_array_equal(image, data)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(12, 10), (12, 10, 3), (12, 10, 4), (12, 10, 5)])
def test_read_tiff_channels_last(tmp_path, dtype, shape):
    data = _random(shape, dtype)
    tifffile.imwrite(tmp_path / "a.tif", data)
    image = read_image(str(tmp_path / "a.tif"))
    expected = data[..., None] if data.ndim == 2 else data
    assert image.dtype == dtype
    np.testing.assert_array_equal(image, expected)


def test_read_tiff_channel_first_is_transposed(tmp_path):
    data = _random((2, 12, 10), np.uint16)
    tifffile.imwrite(tmp_path / "a.tiff", data)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tiff"), np.moveaxis(data, 0, -1))


def test_read_jpg_is_rgb(tmp_path):
    data = np.zeros((16, 16, 3), np.uint8)
    data[..., 0] = 200  # pure red survives JPEG compression well
    _write_png(tmp_path / "a.jpg", data)
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (16, 16, 3) and image[..., 0].mean() > 150 and image[..., 2].mean() < 50


def test_read_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(PodiumError, match="nope.png does not exist"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(PodiumError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(PodiumError, match="bad.tif"):
        read_mask(tmp_path / "bad.tif")


def test_read_mask_png_tif_and_grey_rgb(tmp_path):
    labels = RNG.integers(0, 5, size=(8, 9)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), labels)
    tifffile.imwrite(tmp_path / "m.tif", labels.astype(np.uint16))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.repeat(labels[..., None], 3, axis=-1))
    for name in ("m.png", "m.tif", "rgb.png"):
        mask = read_mask(tmp_path / name)
        assert mask.shape == (8, 9) and np.issubdtype(mask.dtype, np.integer)
        np.testing.assert_array_equal(mask, labels)


def test_read_mask_rejects_colour_masks(tmp_path):
    cv2.imwrite(str(tmp_path / "c.png"), _random((8, 8, 3), np.uint8))
    with pytest.raises(PodiumError, match="c.png.*single-channel"):
        read_mask(tmp_path / "c.png")


# ---------------------------------------------------------------- normalisation
def test_fixed_from_dtype_and_explicit_max_value():
    image = _random((6, 5, 2), np.uint16)
    np.testing.assert_allclose(build_normalizer(None)(image), image / 65535.0, rtol=1e-6)
    out = build_normalizer({"mode": "fixed", "max_value": 1000})(image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, image / 1000.0, rtol=1e-6)


def test_fixed_mean_std_per_channel():
    image = _random((6, 5, 3), np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = build_normalizer({"mode": "fixed", "mean": mean, "std": std, "max_value": 255})(image)
    expected = (image / 255.0 - np.array(mean)) / np.array(std)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_percentile_per_channel_clipped():
    image = _random((20, 20, 2), np.uint16)
    out = build_normalizer({"mode": "percentile", "low": 2, "high": 98})(image)
    for c in range(2):
        lo, hi = np.percentile(image[..., c].astype(np.float32), [2, 98])
        expected = np.clip((image[..., c] - lo) / (hi - lo), 0, 1)
        np.testing.assert_allclose(out[..., c], expected, rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1


def test_minmax_per_channel():
    image = _random((7, 7, 3), np.uint8)
    out = build_normalizer({"mode": "minmax"})(image)
    lo, hi = image.min(axis=(0, 1)), image.max(axis=(0, 1))
    np.testing.assert_allclose(
        out, (image - lo) / (hi - lo).astype(np.float64), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"mode": "percentil"}, 'did you mean "percentile"'),
        ({"mode": "percentile", "hihg": 99}, 'unknown key "hihg".*did you mean "high"'),
        ({"mode": "fixed", "maen": [0.5]}, 'did you mean "mean"'),
        ({"mode": "fixed", "std": [0.0]}, "std must hold positive"),
        ({"mode": "percentile", "low": 99, "high": 1}, "low < high"),
    ],
)
def test_normalize_config_errors(spec, message):
    with pytest.raises(PodiumError, match=message):
        build_normalizer(spec)


def test_mean_length_must_match_channels():
    normalizer = build_normalizer({"mode": "fixed", "mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]})
    with pytest.raises(PodiumError, match="mean has 3 values but the image has 2 channel"):
        normalizer(np.zeros((4, 4, 2), np.uint8))


# ---------------------------------------------------------------- transforms
COMPACT = [
    {"HorizontalFlip": {"p": 0.5}},
    {"RandomRotate90": {}},
    {"RandomBrightnessContrast": {"brightness_limit": 0.2, "p": 0.5}},
]


def test_compact_list_equals_albumentations_compose():
    ours = build_transforms(COMPACT)
    theirs = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.RandomRotate90(),
            A.RandomBrightnessContrast(brightness_limit=0.2, p=0.5),
        ]
    )
    ours.set_random_seed(7)
    theirs.set_random_seed(7)
    image = RNG.random((16, 16, 1)).astype(np.float32)
    mask = (RNG.random((16, 16)) > 0.5).astype(np.uint8)
    for _ in range(5):
        a, b = ours(image=image, mask=mask), theirs(image=image, mask=mask)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["mask"], b["mask"])


def test_serialised_dict_round_trip_and_nesting():
    compose = build_transforms(
        COMPACT + [{"OneOf": {"p": 0.3, "transforms": [{"GaussianBlur": {}}, "GaussNoise"]}}]
    )
    saved = transforms_to_dict(compose)
    assert saved["transform"]["__class_fullname__"] == "Compose"
    assert transforms_to_dict(build_transforms(saved)) == saved
    assert transforms_to_dict(A.from_dict(saved)) == saved


def test_empty_transforms_mean_none():
    assert (
        build_transforms(None) is None
        and build_transforms([]) is None
        and transforms_to_dict(None) is None
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            [{"HorizontalFlp": {"p": 0.5}}],
            'unknown transform "HorizontalFlp".*did you mean "HorizontalFlip"',
        ),
        ([{"OneOf": {"transforms": [{"GausianBlur": {}}]}}], 'did you mean "GaussianBlur"'),
        (
            [{"HorizontalFlip": {"pp": 0.5}}],
            'unknown argument "pp" for transform HorizontalFlip.*did you mean "p"',
        ),
        (
            [{"RandomBrightnessContrast": {"brightness_limit": "abc"}}],
            'RandomBrightnessContrast.*"brightness_limit"',
        ),
        (
            {
                "transform": {
                    "__class_fullname__": "Compose",
                    "transforms": [{"__class_fullname__": "VerticalFlp"}],
                }
            },
            "VerticalFlip",
        ),
        ("HorizontalFlip", "must be a list"),
    ],
)
def test_transform_errors(spec, message):
    with pytest.raises(PodiumError, match=message):
        build_transforms(spec)


# ---------------------------------------------------------------- splits
def test_read_split_and_select(tmp_path):
    (tmp_path / "split.csv").write_text(
        "name,split,fold\n001,train,0\n002,train,1\n003,valid,0\n004,test,1\n"
    )
    df = read_split(tmp_path)
    assert df["name"].tolist() == ["001", "002", "003", "004"]  # leading zeros kept
    assert select_names(df, split="train") == ["001", "002"]
    assert select_names(df, fold=0) == ["001", "003"]
    assert select_names(df, exclude_fold=0) == ["002", "004"]
    assert select_names(df, split="train", fold=1) == ["002"]
    with pytest.raises(PodiumError, match='did you mean "valid"'):
        select_names(df, split="vaild")
    with pytest.raises(PodiumError, match="fold=5 is not in split file"):
        select_names(df, fold=5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,split\na,train\n", "expected name \\+ split"),
        ("name,spilt\na,train\n", 'did you mean "split"'),
        ("name,fold\na,x\n", "non-integer fold"),
        ("name,split\na,train\na,valid\n", "more than once: a"),
    ],
)
def test_bad_split_files(tmp_path, text, message):
    (tmp_path / "s.csv").write_text(text)
    with pytest.raises(PodiumError, match=f"s.csv.*{message}"):
        read_split(tmp_path, "s.csv")


def test_missing_split_file(tmp_path):
    with pytest.raises(PodiumError, match="split.csv does not exist"):
        read_split(tmp_path)


# ---------------------------------------------------------------- dataset
def _make_folder(
    root, names=("a", "b", "c", "d"), channels=3, dtype=np.uint16, labels=2, ext="tif"
):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for _i, name in enumerate(names):
        image = _random((16, 20, channels), dtype)
        if ext == "tif":
            tifffile.imwrite(root / "images" / f"{name}.tif", image)
        else:
            _write_png(root / "images" / f"{name}.{ext}", image[..., 0] if channels == 1 else image)
        cv2.imwrite(
            str(root / "masks" / f"{name}.png"),
            RNG.integers(0, labels, size=(16, 20)).astype(np.uint8),
        )
    rows = [f"{n},{'valid' if i % 2 else 'train'},{i % 2}" for i, n in enumerate(names)]
    (root / "split.csv").write_text("name,split,fold\n" + "\n".join(rows) + "\n")
    return root


def test_binary_item(tmp_path):
    root = _make_folder(tmp_path / "data", labels=3)
    flips = [
        {"HorizontalFlip": {"p": 0.5}},
        {"RandomBrightnessContrast": {"p": 1.0}},
    ]  # 16×20: no rotate90
    ds = ImageFolderDataset(root, ["a", "b"], normalize={"mode": "minmax"}, transforms=flips)
    item = ds[0]
    assert set(item) == {"image", "mask", "name"} and item["name"] == "a"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 16, 20)
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 16, 20)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}


def test_binary_mask_is_label_greater_than_zero(tmp_path):
    root = _make_folder(tmp_path / "data", labels=3)
    mask = ImageFolderDataset(root, ["a"])[0]["mask"][0].numpy()
    np.testing.assert_array_equal(
        mask, (read_mask(root / "masks" / "a.png") > 0).astype(np.float32)
    )


def test_multiclass_item_and_class_check(tmp_path):
    root = _make_folder(tmp_path / "data", labels=4)
    item = ImageFolderDataset(root, ["a"], num_classes=4)[0]
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (16, 20)
    with pytest.raises(PodiumError, match="masks/a.png has values 0..3 but num_classes is 2"):
        ImageFolderDataset(root, ["a"], num_classes=2)[0]


def test_channel_selection_and_normalisation(tmp_path):
    root = _make_folder(tmp_path / "data", channels=4)
    raw = read_image(root / "images" / "a.tif")
    item = ImageFolderDataset(root, ["a"], channels=[2, 0])[0]
    np.testing.assert_allclose(
        item["image"].numpy(), raw[..., [2, 0]].transpose(2, 0, 1) / 65535.0, rtol=1e-6
    )
    with pytest.raises(PodiumError, match="channels \\[5\\].*has 4 channel"):
        ImageFolderDataset(root, ["a"], channels=[5])[0]
    with pytest.raises(PodiumError, match="mean has 3 values but the image has 2"):
        ImageFolderDataset(
            root, ["a"], channels=[0, 1], normalize={"mode": "fixed", "mean": [0, 0, 0]}
        )


def test_png_images_and_without_masks(tmp_path):
    root = _make_folder(tmp_path / "data", channels=1, dtype=np.uint8, ext="png")
    item = ImageFolderDataset(root, ["b"], with_masks=False)[0]
    assert set(item) == {"image", "name"} and item["image"].shape == (1, 16, 20)


def test_missing_folder_mask_and_names(tmp_path):
    with pytest.raises(
        PodiumError,
        match="data folder .*nowhere does not exist \\(expected images/ and masks/ inside\\)",
    ):
        ImageFolderDataset(tmp_path / "nowhere", ["a"])
    root = _make_folder(tmp_path / "data")
    (root / "masks" / "b.png").unlink()
    with pytest.raises(PodiumError, match="images/b.tif has no mask; expected .*masks/b.png"):
        ImageFolderDataset(root, ["a", "b"])
    names = ["a"] + [f"ghost{i}" for i in range(7)]
    with pytest.raises(
        PodiumError, match="7 name\\(s\\) have no image file in .*ghost0, ghost1.* …"
    ):
        ImageFolderDataset(root, names)


def test_augmentation_keeps_image_and_mask_aligned(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.zeros((16, 16), np.uint16)
    image[:4, :8] = 60000
    cv2.imwrite(str(root / "images" / "x.png"), image)
    cv2.imwrite(str(root / "masks" / "x.png"), (image > 0).astype(np.uint8) * 255)
    ds = ImageFolderDataset(
        root, ["x"], transforms=[{"RandomRotate90": {"p": 1}}, {"HorizontalFlip": {"p": 1}}]
    )
    for _ in range(4):
        item = ds[0]
        np.testing.assert_array_equal(item["image"][0].numpy() > 0.5, item["mask"][0].numpy() > 0)


# ---------------------------------------------------------------- builder
def test_build_by_split_and_by_fold(tmp_path):
    root = _make_folder(tmp_path / "data")
    by_split = build_segmentation_datasets(root, train_transforms=COMPACT)
    assert list(by_split) == ["train", "valid"]
    assert by_split["train"].names == ["a", "c"] and by_split["valid"].names == ["b", "d"]
    assert by_split["train"].transforms is not None and by_split["valid"].transforms is None
    (root / "folds.csv").write_text("name,fold\na,0\nb,1\nc,2\nd,0\n")
    by_fold = build_segmentation_datasets(root, split_file="folds.csv", fold=0)
    assert by_fold["train"].names == ["b", "c"] and by_fold["valid"].names == ["a", "d"]


def test_build_prediction_dataset(tmp_path):
    root = _make_folder(tmp_path / "data")
    assert build_segmentation_dataset(root).names == ["a", "b", "c", "d"]
    assert build_segmentation_dataset(root, split="valid").names == ["b", "d"]
    (root / "masks" / "a.png").unlink()
    unlabeled = build_segmentation_dataset(root)
    assert not unlabeled.with_masks and "mask" not in unlabeled[0]


def test_check_data_keys():
    check_data_keys({"root": "x", "fold": 0, "normalize": {"mode": "minmax"}})
    with pytest.raises(
        PodiumError, match='unknown key "trian_transforms".*did you mean "train_transforms"'
    ):
        check_data_keys({"root": "x", "trian_transforms": []})
    with pytest.raises(PodiumError, match='missing the required key "root"'):
        check_data_keys({"fold": 1})


def test_empty_selection_is_an_error(tmp_path):
    root = _make_folder(tmp_path / "data")
    (root / "split.csv").write_text("name,split\na,train\nb,train\n")
    with pytest.raises(PodiumError, match="split='valid' is not in split file"):
        build_segmentation_datasets(root)


def test_split_table_is_a_dataframe(tmp_path):
    root = _make_folder(tmp_path / "data")
    assert isinstance(read_split(root), pd.DataFrame)


# ---------------------------------------------------------------- layouts and targets
def _side_by_side(folder, names=("a", "b"), suffix="_mask", image_ext="jpg"):
    folder.mkdir(parents=True)
    for name in names:
        _write_png(folder / f"{name}.{image_ext}", _random((16, 20, 3), np.uint8))
        cv2.imwrite(
            str(folder / f"{name}{suffix}.png"), (RNG.random((16, 20)) > 0.5).astype(np.uint8) * 255
        )
    return folder


def test_side_by_side_is_auto_detected(tmp_path):
    root = _side_by_side(tmp_path / "data", names=("a", "b", "c"))
    (root / "split.csv").write_text("name,split\na,train\nb,train\nc,valid\n")
    datasets = build_segmentation_datasets(root)
    assert datasets["train"].layout.kind == "side_by_side" and datasets["train"].names == ["a", "b"]
    item = datasets["valid"][0]
    expected = (read_mask(root / "c_mask.png") > 0).astype(np.float32)
    np.testing.assert_array_equal(item["mask"][0].numpy(), expected)
    assert build_segmentation_dataset(root).names == [
        "a",
        "b",
        "c",
    ]  # *_mask files are never images
    assert build_segmentation_dataset(
        root, image_dir="."
    ).with_masks  # how `podium predict` reads a flat folder


def test_side_by_side_in_a_subfolder_with_own_suffix(tmp_path):
    root = tmp_path / "nerve"
    _side_by_side(root / "train", names=("1_1", "1_2"), suffix="-seg", image_ext="tif")
    (root / "split.csv").write_text("name,split\n1_1,train\n1_2,valid\n")
    datasets = build_segmentation_datasets(
        root, image_dir="train", layout="side_by_side", mask_suffix="-seg"
    )
    assert datasets["valid"][0]["mask"].shape == (1, 16, 20)
    (root / "train" / "1_2-seg.png").unlink()
    with pytest.raises(
        PodiumError, match=r"train/1_2\.tif has no mask; expected .*train/1_2-seg\.png"
    ):
        build_segmentation_datasets(
            root, image_dir="train", layout="side_by_side", mask_suffix="-seg"
        )
    with pytest.raises(
        PodiumError,
        match=r"no image files in .*empty; expected images/NAME.ext \+ masks/NAME.png, "
        r"or NAME.ext \+ NAME_mask.png",
    ):
        (tmp_path / "empty").mkdir()
        ImageFolderDataset(tmp_path / "empty", ["a"])


def test_regression_target_keeps_float_values(tmp_path):
    root = _make_folder(tmp_path / "data", names=("a",))
    depth = RNG.random((16, 20)).astype(np.float32) * 7.5
    tifffile.imwrite(root / "masks" / "a.tif", depth)
    (root / "masks" / "a.png").unlink()
    item = ImageFolderDataset(root, ["a"], target="regression")[0]
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 16, 20)
    np.testing.assert_array_equal(item["mask"][0].numpy(), depth)
    flow = RNG.random((2, 16, 20)).astype(np.float32)  # C×H×W file, two target channels
    tifffile.imwrite(root / "masks" / "a.tif", flow)
    np.testing.assert_array_equal(
        ImageFolderDataset(root, ["a"], target="regression", num_classes=2)[0]["mask"].numpy(), flow
    )


def test_multilabel_from_a_multichannel_mask(tmp_path):
    root = _make_folder(tmp_path / "data", names=("a",))
    masks = (RNG.random((16, 20, 3)) > 0.5).astype(np.uint8) * 255  # overlapping classes
    tifffile.imwrite(root / "masks" / "a.tif", masks)
    (root / "masks" / "a.png").unlink()
    flips = [{"HorizontalFlip": {"p": 1.0}}]
    item = ImageFolderDataset(
        root,
        ["a"],
        target="multilabel",
        num_classes=3,
        transforms=flips,
        class_names=["x", "y", "z"],
    )[0]
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (3, 16, 20)
    np.testing.assert_array_equal(item["mask"].numpy(), (masks[:, ::-1] > 0).transpose(2, 0, 1))
    with pytest.raises(PodiumError, match="class_names lists 2 names but num_classes is 3"):
        ImageFolderDataset(root, ["a"], target="multilabel", num_classes=3, class_names=["x", "y"])
    with pytest.raises(PodiumError, match="target binary needs num_classes 1"):
        ImageFolderDataset(root, ["a"], target="binary", num_classes=3)


def test_16bit_png_two_layouts_agree(tmp_path):
    folders = _make_folder(tmp_path / "f", names=("a",), channels=1, ext="png")
    flat = tmp_path / "s"
    flat.mkdir()
    (flat / "a.png").write_bytes((folders / "images" / "a.png").read_bytes())
    (flat / "a_mask.png").write_bytes((folders / "masks" / "a.png").read_bytes())
    one, two = ImageFolderDataset(folders, ["a"])[0], ImageFolderDataset(flat, ["a"])[0]
    assert torch.equal(one["image"], two["image"]) and torch.equal(one["mask"], two["mask"])


def test_check_data_keys_knows_the_new_keys():
    check_data_keys(
        {
            "root": "x",
            "layout": "side_by_side",
            "mask_suffix": "_m",
            "target": "multilabel",
            "masks_csv": "t.csv",
            "class_names": ["a"],
            "in_channels": 3,
            "exclude": "bad.txt",
            "on_bad_sample": "skip",
        }
    )
    with pytest.raises(
        PodiumError, match='unknown key "on_bad_samples".*did you mean "on_bad_sample"'
    ):
        check_data_keys({"root": "x", "on_bad_samples": "skip"})


def test_read_lzw_tiff_without_imagecodecs(tmp_path):
    """cv2 writes LZW-compressed TIFFs, which tifffile cannot decode without imagecodecs."""
    data = _random((12, 10, 3), np.uint8)
    _write_png(tmp_path / "lzw.tif", data)
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tif"), data)
