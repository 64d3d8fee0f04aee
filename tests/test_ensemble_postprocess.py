"""Ensembles vs numpy by hand, post-processing vs hand-made masks (and scipy), probability-map
PNGs."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from podium.errors import PodiumError
from podium.inference.ensemble import Ensemble, average_probabilities
from podium.inference.postprocess import PostProcess
from podium.inference.probability_maps import (
    probability_map_classes,
    probability_map_names,
    read_probability_map,
    read_probability_maps,
    write_probability_map,
)

RNG = np.random.default_rng(0)
MAPS = [RNG.random((3, 8, 6)) for _ in range(3)]
WEIGHTS = [3.0, 1.0, 0.5]


# ---------------------------------------------------------------- ensembles
def test_weighted_mean_is_numpy_average():
    np.testing.assert_allclose(
        average_probabilities(MAPS, WEIGHTS), np.average(MAPS, axis=0, weights=WEIGHTS), rtol=1e-12
    )
    np.testing.assert_allclose(
        average_probabilities(MAPS), (MAPS[0] + MAPS[1] + MAPS[2]) / 3, rtol=1e-12
    )


def test_weighted_geometric_mean_by_hand():
    w = np.array(WEIGHTS) / sum(WEIGHTS)
    expected = MAPS[0] ** w[0] * MAPS[1] ** w[1] * MAPS[2] ** w[2]
    np.testing.assert_allclose(
        average_probabilities(MAPS, WEIGHTS, method="geometric"), expected, rtol=1e-9
    )


def test_geometric_is_eps_safe_and_zero_weight_models_are_left_out():
    zeros = np.zeros((1, 2, 2))
    halves = np.full((1, 2, 2), 0.5)
    with np.errstate(all="raise"):  # no log(0) / 0·inf warnings
        out = average_probabilities([zeros, halves], method="geometric")
        np.testing.assert_allclose(out, np.sqrt(1e-7 * 0.5), rtol=1e-6)  # 0 counts as eps
        np.testing.assert_allclose(
            average_probabilities([zeros, halves], [0, 1], method="geometric"), halves, rtol=1e-12
        )


def test_power_mean_by_hand():
    w = np.array(WEIGHTS) / sum(WEIGHTS)
    expected = w[0] * MAPS[0] ** 2 + w[1] * MAPS[1] ** 2 + w[2] * MAPS[2] ** 2
    np.testing.assert_allclose(
        average_probabilities(MAPS, WEIGHTS, method="power", power=2.0), expected, rtol=1e-12
    )
    # 0.7 everywhere: mean of p**2 is 0.49 (not re-scaled to the probability scale)
    np.testing.assert_allclose(
        average_probabilities([np.full((1, 2, 2), 0.7)] * 2, method="power", power=2), 0.49
    )


def test_normalize_for_softmax_sums_to_one_and_keeps_argmax():
    softmax = [
        torch.softmax(torch.from_numpy(RNG.normal(size=(2, 4, 5, 5))), dim=1) for _ in range(3)
    ]
    raw = average_probabilities(softmax, method="power", power=3.0)
    normalised = average_probabilities(softmax, method="power", power=3.0, normalize=True)
    assert not torch.allclose(raw.sum(1), torch.ones_like(raw.sum(1)))
    torch.testing.assert_close(normalised.sum(1), torch.ones_like(raw.sum(1)))
    assert torch.equal(raw.argmax(1), normalised.argmax(1))
    with pytest.raises(PodiumError, match="normalize: true needs softmax outputs"):
        average_probabilities([MAPS[0][:1]], normalize=True)


def test_torch_inputs_give_tensors_on_their_device_with_the_same_values():
    tensors = [torch.from_numpy(m) for m in MAPS]
    for method, power in (("mean", 1.0), ("geometric", 1.0), ("power", 2.0)):
        out = Ensemble(method, power)(tensors, WEIGHTS)
        assert isinstance(out, torch.Tensor) and out.device == tensors[0].device
        np.testing.assert_allclose(
            out.numpy(), average_probabilities(MAPS, WEIGHTS, method, power), rtol=1e-12
        )
    mixed = average_probabilities([tensors[0], MAPS[1]])  # numpy joins the tensor's device
    assert isinstance(mixed, torch.Tensor)


def test_ensemble_from_config():
    ensemble = Ensemble.from_config({"method": "power", "power": 2})
    np.testing.assert_allclose(ensemble(MAPS[:2]), (MAPS[0] ** 2 + MAPS[1] ** 2) / 2)
    assert Ensemble.from_config(None).method == "mean"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: average_probabilities([]), "at least one probability map"),
        (lambda: average_probabilities([MAPS[0], MAPS[1][:2]]), r"model 2 gives \(2, 8, 6\)"),
        (lambda: average_probabilities(MAPS, [1, 2]), "2 values .* for 3 models"),
        (lambda: average_probabilities(MAPS, [1, -1, 1]), "weights must be numbers >= 0"),
        (lambda: average_probabilities(MAPS, [0, 0, 0]), "sum to 0"),
        (
            lambda: average_probabilities([MAPS[0] * 4 - 2]),
            r"values -\S+\.\.\S+; expected probabilities in \[0, 1\] \(logits\?",
        ),
        (lambda: average_probabilities([(MAPS[0] * 255).astype(np.uint8)]), "dtype uint8"),
        (lambda: average_probabilities(MAPS, method="geometirc"), 'did you mean "geometric"'),
        (
            lambda: average_probabilities(MAPS, method="power", power=0),
            "power must be a number > 0",
        ),
        (
            lambda: Ensemble.from_config({"method": "mean", "power": 2.0}),
            "only used by method power",
        ),
        (lambda: Ensemble.from_config({"methd": "mean"}), 'unknown key "methd" in ensemble'),
    ],
)
def test_ensemble_bad_input(call, message):
    with pytest.raises(PodiumError, match=message):
        call()


# ---------------------------------------------------------------- post-processing
def _blobs(shape, boxes, value=0.9):
    """Float map with `value` inside each (y0, y1, x0, x1) box."""
    p = np.zeros(shape, np.float32)
    for y0, y1, x0, x1 in boxes:
        p[y0:y1, x0:x1] = value
    return p


def test_threshold_is_strict():
    p = np.array([[[0.5, 0.50001, 0.2]]], np.float32)
    np.testing.assert_array_equal(PostProcess()(p), [[0, 1, 0]])
    np.testing.assert_array_equal(PostProcess(threshold=0.1)(p), [[1, 1, 1]])


def test_min_size_removes_blobs_below_the_size_exactly():
    p = _blobs((12, 12), [(0, 2, 0, 2), (5, 6, 5, 10), (9, 12, 9, 11)])  # sizes 4, 5, 6
    for min_size, kept in ((0, 15), (4, 15), (5, 11), (6, 6), (7, 0)):
        out = PostProcess(min_size=min_size)(p[None])
        assert out.dtype == np.uint8 and out.shape == (12, 12)
        assert out.sum() == kept, (min_size, out.sum())
    assert not PostProcess(min_size=7)(p[None]).any()  # nothing survives: an empty mask


def test_diagonal_pixels_are_one_blob():
    p = np.zeros((1, 4, 4), np.float32)
    p[0, 0, 0] = p[0, 1, 1] = 1.0  # touching corners: 8-connected, one blob of 2
    assert PostProcess(min_size=2)(p).sum() == 2


def test_min_size_matches_scipy_label_on_random_masks():
    p = (RNG.random((1, 64, 64)) > 0.6).astype(np.float32)
    labels, count = ndimage.label(p[0] > 0.5, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())
    for min_size in (2, 3, 5, 9):
        keep = sizes >= min_size
        keep[0] = False
        np.testing.assert_array_equal(PostProcess(min_size=min_size)(p), keep[labels])


def test_fill_holes_then_size_of_the_filled_object():
    ring = np.zeros((1, 7, 7), np.float32)
    ring[0, 1:4, 1:4] = 1.0
    ring[0, 2, 2] = 0.0  # an 8-pixel ring around a 1-pixel hole
    ring[0, 5:7, 0:2] = 1.0  # plus a 4-pixel blob
    filled = PostProcess(fill_holes=True)(ring)
    assert filled[2, 2] == 1 and filled.sum() == 13
    assert PostProcess(fill_holes=False, min_size=9)(ring).sum() == 0  # ring alone is 8 pixels
    kept = PostProcess(fill_holes=True, min_size=9)(ring)  # filled ring is 9 pixels, the blob 4
    np.testing.assert_array_equal(kept, filled * (np.arange(7)[:, None] < 4))


def test_a_hole_open_to_the_border_is_not_filled():
    u = np.ones((1, 4, 4), np.float32)
    u[0, 0:3, 1:3] = 0  # a U open at the top
    np.testing.assert_array_equal(PostProcess(fill_holes=True)(u), (u[0] > 0.5).astype(np.uint8))


def test_multilabel_per_class_values():
    p = np.stack(
        [
            _blobs((10, 10), [(0, 2, 0, 2), (5, 10, 5, 10)], 0.6),  # 4 + 25 pixels at 0.6
            _blobs((10, 10), [(0, 2, 0, 2), (5, 10, 5, 10)], 0.6),
        ]
    )
    post = PostProcess.from_config(
        {"threshold": [0.5, 0.7], "min_size": [5, 0]}, mode="multilabel", class_names=["a", "b"]
    )
    out = post(p)
    assert out.shape == (2, 10, 10) and out.dtype == np.uint8
    assert out[0].sum() == 25 and out[0][5:, 5:].all()  # class a: 4-pixel blob removed
    assert out[1].sum() == 0  # class b: 0.6 is below its threshold 0.7
    np.testing.assert_array_equal(
        PostProcess.from_config({"min_size": 5}, mode="multilabel")(p)[1], out[0]
    )


def test_multiclass_argmax_threshold_min_size_and_holes():
    background = np.full((8, 8), 0.5, np.float32)
    car = _blobs((8, 8), [(0, 3, 0, 3)], 0.45)  # 9 pixels of car (background 0 there)
    road = _blobs((8, 8), [(5, 8, 5, 8)], 0.8)  # 9 pixels of road
    road[6, 6] = 0.0  # a hole in the road: argmax background there
    car[6, 6] = 0.2  # … but car is the runner-up there, it must not take the pixel
    p = np.stack([background - 0.5 * ((car >= 0.45) | (road > 0)), car, road])
    plain = PostProcess(mode="multiclass")(p)
    assert plain.dtype == np.uint8 and plain.shape == (8, 8)
    np.testing.assert_array_equal(plain, p.argmax(0))  # default: plain argmax
    assert (plain == 1).sum() == 9 and (plain == 2).sum() == 8
    out = PostProcess(threshold=[0.0, 0.5, 0.5], mode="multiclass")(p)
    assert (out == 1).sum() == 0 and (out == 2).sum() == 8  # car 0.45 <= 0.5 → background, not road
    filled = PostProcess(fill_holes=[False, False, True], mode="multiclass")(p)
    assert filled[6, 6] == 2 and (filled == 2).sum() == 9
    small = PostProcess(min_size=[0, 10, 9], mode="multiclass")(
        p
    )  # car 9 < 10 removed, road 8 < 9 removed
    assert not small.any()
    small = PostProcess(min_size=[0, 10, 9], fill_holes=True, mode="multiclass")(
        p
    )  # filled road: 9 pixels
    assert (small == 2).sum() == 9 and (small == 1).sum() == 0


def test_multiclass_fill_never_overwrites_another_class():
    p = np.zeros((3, 5, 5), np.float32)
    p[1] = 0.9  # class 1 everywhere …
    p[1, 2, 2] = 0.0
    p[2, 2, 2] = 0.9  # … enclosing one pixel of class 2
    p[0] = 1 - p[1] - p[2]
    out = PostProcess(fill_holes=True, mode="multiclass")(p)
    assert out[2, 2] == 2 and (out == 1).sum() == 24


def test_batch_and_torch_input():
    p = torch.from_numpy(
        np.stack([_blobs((6, 6), [(0, 3, 0, 3)])[None], _blobs((6, 6), [(0, 1, 0, 1)])[None]])
    )
    out = PostProcess(min_size=2)(p)
    assert out.shape == (2, 6, 6) and out[0].sum() == 9 and out[1].sum() == 0


def test_to_config_round_trip():
    config = {"threshold": [0.4, 0.6], "min_size": [16, 0], "fill_holes": [True, False]}
    assert PostProcess.from_config(config, mode="multilabel").to_config() == config
    assert PostProcess.from_config({}, mode="binary").to_config() == {
        "threshold": 0.5,
        "min_size": 0,
        "fill_holes": False,
    }
    assert PostProcess.from_config({}, mode="multiclass").threshold == 0.0


@pytest.mark.parametrize(
    "config, kwargs, message",
    [
        ({"threshold": 1.5}, {}, r"threshold must be a probability in \[0, 1\]"),
        ({"min_size": -1}, {}, "min_size must be a whole number of pixels >= 0"),
        ({"min_size": 2.5}, {}, "min_size must be a whole number"),
        ({"fill_holes": "yes"}, {}, "fill_holes must be true or false"),
        (
            {"threshod": 0.5},
            {},
            'unknown key "threshod" in postprocess \\(did you mean "threshold"\\?\\)',
        ),
        (
            {"threshold": [0.5, 0.5, 0.5]},
            {"mode": "multilabel", "class_names": ["a", "b"]},
            r"threshold lists 3 values .* 2 classes \(a, b\)",
        ),
        ({"min_size": []}, {}, "empty list"),
        ({}, {"mode": "multilable"}, 'did you mean "multilabel"'),
    ],
)
def test_postprocess_bad_config(config, kwargs, message):
    with pytest.raises(PodiumError, match=message):
        PostProcess.from_config(config, **kwargs)


def test_postprocess_bad_shapes():
    with pytest.raises(PodiumError, match="binary post-processing needs 1 channel, got 2"):
        PostProcess()(np.zeros((2, 4, 4)))
    with pytest.raises(PodiumError, match=r"min_size lists 2 values .* there are 3 classes"):
        PostProcess(min_size=[1, 2], mode="multilabel")(np.zeros((3, 4, 4)))


# ---------------------------------------------------------------- probability maps
def test_probability_map_round_trip_within_half_a_step(tmp_path):
    p = RNG.random((1, 33, 17)).astype(np.float32)
    p[0, 0, :4] = [0.0, 1.0, 0.5 / 255, 1 - 0.49 / 255]
    write_probability_map(tmp_path, "img2", p)
    write_probability_map(tmp_path, "img10", torch.from_numpy(p[0]))  # H×W tensors too
    assert sorted(f.name for f in tmp_path.iterdir()) == ["classes.json", "img10.png", "img2.png"]
    maps = list(read_probability_maps(tmp_path))
    assert [name for name, _ in maps] == ["img10", "img2"]
    for _, read in maps:
        assert read.dtype == np.float32 and read.shape == (1, 33, 17)
        assert np.abs(read - p).max() <= 1 / 510 + 1e-7
        assert read[0, 0, 0] == 0.0 and read[0, 0, 1] == 1.0


def test_multiclass_layout_one_folder_per_class(tmp_path):
    p = RNG.random((3, 5, 4)).astype(np.float32)
    write_probability_map(tmp_path, "a", p, class_names=["bg", "car", "road"])
    assert json.loads((tmp_path / "classes.json").read_text())["classes"] == ["bg", "car", "road"]
    assert (tmp_path / "road" / "a.png").is_file()
    assert probability_map_classes(tmp_path) == ["bg", "car", "road"] and probability_map_names(
        tmp_path
    ) == ["a"]
    assert np.abs(read_probability_map(tmp_path, "a") - p).max() <= 1 / 510 + 1e-7
    with pytest.raises(
        PodiumError, match="lists classes .*'bg', 'car', 'road'.* but these maps have .*'x', 'y'"
    ):
        write_probability_map(tmp_path, "b", p[:2], class_names=["x", "y"])
    (tmp_path / "road" / "a.png").unlink()
    with pytest.raises(PodiumError, match="class road .* miss 1 image\\(s\\): a"):
        probability_map_names(tmp_path)


def test_layout_without_manifest_is_inferred(tmp_path):
    write_probability_map(tmp_path, "a", RNG.random((2, 4, 4)), class_names=["x", "y"])
    (tmp_path / "classes.json").unlink()
    assert probability_map_classes(tmp_path) == ["x", "y"]


@pytest.mark.parametrize(
    "name, array, message",
    [
        ("a", np.full((1, 2, 2), 3.0), r"values 3\.\.3; expected probabilities"),
        ("a", np.full((1, 2, 2), np.nan), "expected probabilities"),
        ("../a", np.zeros((1, 2, 2)), "cannot be a file name"),
        ("a", np.zeros((2, 2, 2, 2)), "expected C×H×W"),
    ],
)
def test_probability_map_bad_input(tmp_path, name, array, message):
    with pytest.raises(PodiumError, match=message):
        write_probability_map(tmp_path, name, array)


def test_reading_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(PodiumError, match="probability map folder .*nope does not exist"):
        read_probability_maps(tmp_path / "nope")
    with pytest.raises(PodiumError, match="holds no PNG maps"):
        read_probability_maps(tmp_path)
