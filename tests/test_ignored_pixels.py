"""Pixels a dataset marks as ignored (nodata, padding: its `ignore_index`) must count in no loss
term and no mask metric: the runner refuses a stage whose criteria or metric callbacks would
count them, before anything is written."""

import copy

import pytest
import yaml

from conftest import REPO, catalyst_run_in_process
from podium.errors import PodiumError
from podium.runners.cross_checks import check_ignored_pixels

TREES = REPO / "configs" / "trees_geo" / "unet_resnet18.yml"
WHY = "but the data marks nodata and padding pixels with 255"


class Windows:
    ignore_index = 255


@pytest.fixture(scope="module")
def trees_config():
    return yaml.safe_load(TREES.read_text())


def _check(config):
    check_ignored_pixels(config, "train", {"train": Windows(), "valid": Windows()})


def test_the_trees_config_ignores_the_nodata_value(trees_config):
    _check(trees_config)  # its losses and its metric callback all say 255


def test_a_loss_that_counts_ignored_pixels_is_refused_before_the_run_starts(trees_geo, tmp_path):
    message = catalyst_run_in_process(
        tmp_path / "run", trees_geo, "--stages/train/criterion/bce/ignore_index=0:int", config=TREES
    )
    assert message == f"stages/train/criterion/bce/ignore_index is 0, {WHY}; set it to 255"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda c: c["criterion"]["dice"].pop("ignore_index"),
            f"stages/train/criterion/dice/ignore_index is None, {WHY}; set it to 255",
        ),
        (
            lambda c: c["criterion"].update(bce={"_target_": "torch.nn.BCEWithLogitsLoss"}),
            f"stages/train/criterion/bce: torch.nn.BCEWithLogitsLoss cannot ignore pixels, {WHY}; "
            "use a loss with ignore_index: 255 (podium.losses.SoftBCEWithLogitsLoss, DiceLoss, "
            "torch.nn.CrossEntropyLoss, ...)",
        ),
        (
            lambda c: c["criterion"].update(ce={"_target_": "torch.nn.CrossEntropyLoss"}),
            f"stages/train/criterion/ce/ignore_index is -100, {WHY}; set it to 255",
        ),
        (
            lambda c: c["callbacks"]["metrics"].pop("ignore_value"),
            f"stages/train/callbacks/metrics/ignore_value is None, {WHY}; set it to 255",
        ),
        (
            lambda c: c["callbacks"].update(
                iou={
                    "_target_": "catalyst.callbacks.IOUCallback",
                    "input_key": "probs",
                    "target_key": "mask",
                }
            ),
            f"stages/train/callbacks/iou: catalyst.callbacks.IOUCallback counts every pixel of "
            f"mask, {WHY}; use podium.callbacks.SegmentationMetricsCallback with "
            "ignore_value: 255",
        ),
    ],
)
def test_each_way_of_counting_ignored_pixels_is_one_line(trees_config, change, expected):
    config = copy.deepcopy(trees_config)
    change(config["stages"]["train"])
    with pytest.raises(PodiumError) as error:
        _check(config)
    assert str(error.value) == expected


def test_metrics_of_other_targets_and_data_without_ignored_pixels_pass(trees_config):
    config = copy.deepcopy(trees_config)
    config["stages"]["train"]["callbacks"]["iou"] = {
        "_target_": "catalyst.callbacks.IOUCallback",
        "input_key": "probs",
        "target_key": "building",  # not the mask: its pixels are not the data's
    }
    _check(config)
    config["stages"]["train"]["criterion"]["bce"] = {"_target_": "torch.nn.BCEWithLogitsLoss"}
    check_ignored_pixels(config, "train", {"train": object()})  # image folders: nothing ignored
