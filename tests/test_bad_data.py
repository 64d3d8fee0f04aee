"""Bad data: one clear PodiumError naming the file and what was expected — or, with
`on_bad_sample: skip`, a warning per file, a replacement sample and a count."""

import logging

import cv2
import numpy as np
import pytest
import tifffile
from torch.utils.data import DataLoader

from podium.datasets.builder import build_segmentation_dataset, build_segmentation_datasets
from podium.datasets.image_folder import ImageFolderDataset
from podium.errors import PodiumError

NAMES = ("a", "b", "c", "d", "e", "f")


def _folder(root, names=NAMES, channels=3, labels=2, size=(16, 20)):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        cv2.imwrite(
            str(root / "images" / f"{name}.png"),
            rng.integers(0, 255, (*size, channels)).astype(np.uint8),
        )
        cv2.imwrite(
            str(root / "masks" / f"{name}.png"), rng.integers(0, labels, size).astype(np.uint8)
        )
    (root / "split.csv").write_text(
        "name,split\n"
        + "".join(f"{n},{'valid' if i < 2 else 'train'}\n" for i, n in enumerate(names))
    )
    return root


@pytest.fixture
def root(tmp_path):
    return _folder(tmp_path / "data")


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------- one clear error each
def test_corrupt_image(root):
    (root / "images" / "c.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(
        PodiumError,
        match=r"cannot decode image file .*images/c\.png \(corrupt or truncated\); "
        r"expected a readable PNG, JPEG or TIFF",
    ):
        ImageFolderDataset(root, ["c"])[0]


@pytest.mark.parametrize("ext", ["png", "jpg", "tif"])
def test_truncated_image(tmp_path, ext):
    root = _folder(tmp_path / "d", names=("x",))
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    (root / "images" / "x.png").unlink()
    path = root / "images" / f"x.{ext}"
    if ext == "tif":
        tifffile.imwrite(path, image)
    else:
        cv2.imwrite(str(path), image)
    cv2.imwrite(str(root / "masks" / "x.png"), np.zeros((64, 64), np.uint8))
    _truncate(path)
    with pytest.raises(PodiumError, match=rf"images/x\.{ext}.*(corrupt or truncated)"):
        ImageFolderDataset(root, ["x"])[0]


def test_mask_missing(root):
    (root / "masks" / "d.png").unlink()
    with pytest.raises(
        PodiumError, match=r"image .*images/d\.png has no mask; expected .*masks/d\.png"
    ):
        build_segmentation_datasets(root)


def test_mask_size_differs(root):
    cv2.imwrite(str(root / "masks" / "a.png"), np.zeros((10, 20), np.uint8))
    with pytest.raises(
        PodiumError,
        match=r"mask .*masks/a\.png is 20×10 but image "
        r".*images/a\.png is 20×16; expected the same size",
    ):
        ImageFolderDataset(root, ["a"])[0]


def test_mask_value_not_below_num_classes(root):
    mask = np.zeros((16, 20), np.uint8)
    mask[3, 4] = 7
    cv2.imwrite(str(root / "masks" / "b.png"), mask)
    with pytest.raises(
        PodiumError,
        match=r"mask .*masks/b\.png has values 0\.\.7 but num_classes is 3; "
        r"expected class indices 0\.\.2",
    ):
        ImageFolderDataset(root, ["b"], num_classes=3)[0]


def test_wrong_channel_count(root):
    with pytest.raises(
        PodiumError,
        match=r"image .*images/a\.png has 3 channel\(s\) but in_channels is 1; expected 1 channel",
    ):
        ImageFolderDataset(root, ["a"], in_channels=1)[0]
    with pytest.raises(
        PodiumError, match=r"channels \[4\] requested but image .*images/a\.png has 3 channel"
    ):
        ImageFolderDataset(root, ["a"], channels=[4])[0]
    with pytest.raises(
        PodiumError, match=r"channels \[0, 1\] selects 2 channel\(s\) but in_channels is 3"
    ):
        ImageFolderDataset(root, ["a"], channels=[0, 1], in_channels=3)
    assert ImageFolderDataset(root, ["a"], channels=[2], in_channels=1)[0]["image"].shape == (
        1,
        16,
        20,
    )


def test_multilabel_mask_channel_count(root):
    tifffile.imwrite(root / "masks" / "a.tif", np.zeros((16, 20, 2), np.uint8))
    (root / "masks" / "a.png").unlink()
    with pytest.raises(
        PodiumError,
        match=r"mask .*masks/a\.tif has 2 channel\(s\) but num_classes is 3; "
        r"expected one channel per class",
    ):
        ImageFolderDataset(root, ["a"], num_classes=3, target="multilabel")[0]


def test_empty_split(root):
    (root / "split.csv").write_text("name,split\na,train\nb,valid\n")
    (root / "skip.txt").write_text("b\n")
    with pytest.raises(
        PodiumError,
        match=r"the valid selection of .*split\.csv is empty after the exclusion list skip\.txt",
    ):
        build_segmentation_datasets(root, exclude="skip.txt")
    (root / "split.csv").write_text("name,split\na,train\nb,valid\nc,test\n")
    with pytest.raises(PodiumError, match=r"the test selection is empty after the exclusion list"):
        (root / "skip.txt").write_text("c\n")
        build_segmentation_dataset(root, split="test", exclude="skip.txt")


def test_rle_overrun(root):
    (root / "train.csv").write_text("ImageId,EncodedPixels\na.png,300 50\n")
    with pytest.raises(
        PodiumError, match=r"image a\.png in .*train\.csv overruns the image by 29 pixel\(s\)"
    ):
        build_segmentation_datasets(root, masks_csv="train.csv")["valid"][0]


def test_bad_option_values(root):
    for key, value, message in [
        (
            "on_bad_sample",
            "ignore",
            "on_bad_sample 'ignore' is not supported; expected one of: error, skip",
        ),
        (
            "target",
            "multilabl",
            "target 'multilabl' is not supported \\(did you mean \"multilabel\"\\?\\)",
        ),
        ("layout", "side-by-side", 'did you mean "side_by_side"'),
    ]:
        with pytest.raises(PodiumError, match=message):
            ImageFolderDataset(root, ["a"], **{key: value})


# ---------------------------------------------------------------- on_bad_sample: skip
def _break(root):
    (root / "images" / "c.png").write_bytes(b"broken")  # corrupt
    cv2.imwrite(str(root / "masks" / "d.png"), np.zeros((5, 5), np.uint8))  # wrong size
    (root / "masks" / "e.png").unlink()  # missing mask, found on construction


def test_skip_replaces_logs_once_and_counts(root, caplog):
    _break(root)
    with caplog.at_level(logging.WARNING, logger="podium.datasets"):
        ds = ImageFolderDataset(root, list(NAMES), on_bad_sample="skip")
        assert ds.skipped == 1 and ds.skipped_names == ["e"]  # missing mask: known at once
        names = [ds[i]["name"] for i in range(len(ds))]
        names_again = [ds[i]["name"] for i in range(len(ds))]
    assert (
        names == names_again == ["a", "b", "f", "f", "f", "f"]
    )  # the next good sample replaces a bad one
    assert ds.skipped == 3 and ds.skipped_names == ["c", "d", "e"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # once per file, not once per access
    assert any("images/c.png (corrupt or truncated)" in line for line in lines)
    assert any("masks/d.png is 5×5" in line for line in lines)
    assert all(line.startswith("podium: warning: skipping bad sample") for line in lines)
    assert "3 of 6 samples" in ds.skipped_summary() and "c, d, e" in ds.skipped_summary()


def test_skip_wraps_around_and_all_bad_is_an_error(root):
    (root / "images" / "f.png").write_bytes(b"broken")
    ds = ImageFolderDataset(root, list(NAMES), on_bad_sample="skip")
    assert ds[5]["name"] == "a"
    for name in NAMES:
        (root / "images" / f"{name}.png").write_bytes(b"broken")
    ds = ImageFolderDataset(root, list(NAMES), on_bad_sample="skip")
    with pytest.raises(PodiumError, match="all 6 samples of .* are bad \\(on_bad_sample: skip\\)"):
        ds[0]


def test_skip_counts_reach_the_parent_from_dataloader_workers(root):
    _break(root)
    ds = build_segmentation_dataset(root, with_masks=True, on_bad_sample="skip")
    assert len(ds) == 6 and ds.skipped == 1
    loader = DataLoader(ds, batch_size=2, num_workers=2)
    names = [n for batch in loader for n in batch["name"]]
    assert len(names) == 6 and not {"c", "d", "e"} & set(names)
    assert ds.skipped == 3 and ds.skipped_names == ["c", "d", "e"]


def test_skip_through_the_builder(root):
    _break(root)
    datasets = build_segmentation_datasets(root, on_bad_sample="skip")
    assert [datasets["train"][i]["name"] for i in range(4)] == ["f", "f", "f", "f"]
    assert datasets["train"].skipped == 3 and datasets["valid"].skipped == 0


# ---------------------------------------------------------------- exclusion lists
def test_exclusion_list_with_comments_extensions_and_unknown_names(root, caplog):
    (root / "bad.txt").write_text(
        "# blurry images\nc.png   # out of focus\n\n  d\nghost\nphantom.jpg\n"
    )
    with caplog.at_level(logging.WARNING, logger="podium.datasets"):
        datasets = build_segmentation_datasets(root, exclude="bad.txt")
    assert datasets["train"].names == ["e", "f"] and datasets["valid"].names == ["a", "b"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "bad.txt names 2 image(s) not in the data: ghost, phantom" in warnings[0]


def test_exclusion_list_for_prediction_and_missing_file(root):
    (root / "skip.txt").write_text("a\nb\n")
    assert build_segmentation_dataset(root, exclude=str(root / "skip.txt")).names == [
        "c",
        "d",
        "e",
        "f",
    ]
    with pytest.raises(
        PodiumError,
        match=r"exclusion list .*nope\.txt does not exist; "
        r"expected a text file with one image name per line",
    ):
        build_segmentation_datasets(root, exclude="nope.txt")
