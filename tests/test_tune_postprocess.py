"""`podium tune-postprocess` on synthetic probability maps whose best threshold / min-size per class
is known by construction; the YAML edit keeps the rest of the file; bad input is one error line."""

import cv2
import numpy as np
import pytest
import yaml

from conftest import run_command
from podium.cli.main import main
from podium.cli.tune_postprocess import parse_grid
from podium.cli.yaml_blocks import replace_yaml_block
from podium.errors import PodiumError
from podium.inference.postprocess import PostProcess
from podium.inference.postprocess_search import tune
from podium.inference.probability_maps import read_probability_map, write_probability_map
from podium.inference.submission import SubmissionWriter

SIZE = 48
CONFIG = """\
# inference config of the nuclei demo
models:
  - {run: logs/nuclei, checkpoint: best}   # the best epoch
postprocess:
  threshold: 0.5   # replaced by the tuned value
  fill_holes: true
# outputs follow
outputs: {masks: true, overlays: false}
"""


def _object(truth, prob, y, x, h, w, rim, halo):
    """A true h×w box: inside 0.9, its 1-pixel rim `rim`, a 1-pixel halo outside it `halo`."""
    prob[y - 1 : y + h + 1, x - 1 : x + w + 1] = np.maximum(
        prob[y - 1 : y + h + 1, x - 1 : x + w + 1], halo
    )
    prob[y : y + h, x : x + w] = rim
    prob[y + 1 : y + h - 1, x + 1 : x + w - 1] = 0.9
    truth[y : y + h, x : x + w] = 1


def _class_maps(index, rim, halo, noise, objects):
    """(truth, probabilities) H×W of one class: `objects` (h, w) boxes, a noise blob of `noise`
    pixels.

    By construction the best threshold lies between halo and rim and the best min-size between
    the noise blob and the smallest object; image 0 has no object (only noise)."""
    truth = np.zeros((SIZE, SIZE), np.uint8)
    prob = np.full((SIZE, SIZE), 0.05, np.float32)
    for k, (h, w) in enumerate(objects if index else []):
        _object(truth, prob, 3 + 16 * k, 3 + 9 * index % 20, h, w, rim, halo)
    ny, nx = noise
    prob[SIZE - 2 - ny : SIZE - 2, SIZE - 2 - nx : SIZE - 2] = (
        0.9  # a false blob far from the objects
    )
    return truth, prob


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """6 images: best threshold 0.4 (rim 0.42, halo 0.38), best min-size 16 (noise 9 px, smallest
    object 40)."""
    root = tmp_path_factory.mktemp("tune") / "data"
    maps = root.parent / "probabilities"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = [f"img{i}" for i in range(6)]
    for i, name in enumerate(names):
        truth, prob = _class_maps(i, 0.42, 0.38, (3, 3), [(5, 8), (12, 12)][: 1 + i % 2])
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((SIZE, SIZE), np.uint8))
        cv2.imwrite(str(root / "masks" / f"{name}.png"), truth * 255)
        write_probability_map(maps, name, prob)
    (root / "split.csv").write_text(
        "name,split\n"
        + "".join(f"{n},{'valid' if i < 4 else 'train'}\n" for i, n in enumerate(names))
    )
    return root, maps


def _args(root, maps, config, *extra):
    return [
        "tune-postprocess",
        "--probabilities",
        str(maps),
        "--data",
        str(root),
        "--config",
        str(config),
        "--thresholds",
        "0.3:0.7:0.05",
        "--min-sizes",
        "0,4,16,64",
        *extra,
    ]


def test_cli_finds_the_known_best_and_keeps_the_yaml(tmp_path, binary):
    root, maps = binary
    config = tmp_path / "infer.yml"
    config.write_text(CONFIG)
    result = run_command(
        "podium", *_args(root, maps, config, "--split", "valid", "--write", tmp_path / "tuned.yml")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["class", "threshold", "min_size", "dice", "dice@0.5/0"]
    name, threshold, min_size, dice, default = row.split()
    assert (name, float(threshold), int(min_size), float(dice)) == ("foreground", 0.4, 16, 1.0)
    assert float(default) < 0.9  # rim lost and noise kept at 0.5 / 0
    assert config.read_text() == CONFIG  # --write leaves the original alone
    tuned = (tmp_path / "tuned.yml").read_text()
    data = yaml.safe_load(tuned)
    assert data["postprocess"] == {"threshold": 0.4, "min_size": 16, "fill_holes": True}
    assert data["models"] == [{"run": "logs/nuclei", "checkpoint": "best"}] and data["outputs"] == {
        "masks": True,
        "overlays": False,
    }
    for comment in (
        "# inference config of the nuclei demo",
        "# the best epoch",
        "# outputs follow",
    ):
        assert comment in tuned
    assert (
        "  threshold: 0.4   # replaced by the tuned value" in tuned.splitlines()
    )  # comments in the block stay too
    assert tuned.splitlines()[4].startswith(
        "  # tuned by podium tune-postprocess: dice (image) on 4 images"
    )


def test_in_place_without_split_and_iou(tmp_path, binary, capsys):
    root, maps = binary
    config = tmp_path / "infer.yml"
    config.write_text("postprocess: {threshold: 0.5}\nout: predictions\n")
    assert main(_args(root, maps, config, "--metric", "iou")) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[3:] == ["iou", "iou@0.5/0"] and row.split()[:4] == [
        "foreground",
        "0.4",
        "16",
        "1.0000",
    ]
    data = yaml.safe_load(config.read_text())
    assert data == {
        "postprocess": {"threshold": 0.4, "min_size": 16, "fill_holes": False},
        "out": "predictions",
    }


def test_multilabel_from_a_kaggle_csv_tunes_each_class(tmp_path):
    """Class Fish as above (0.4, 16); class Flower: rim 0.62 / halo 0.58 → 0.6, noise 30 px, objects
    >= 100 px → 64."""
    root, maps = tmp_path / "data", tmp_path / "probabilities"
    (root / "images").mkdir(parents=True)
    names = [f"img{i}" for i in range(4)]
    with SubmissionWriter(
        root / "train.csv",
        columns=("Image_Label", "EncodedPixels"),
        name_format="{name}.png_{class}",
        class_names=["Fish", "Flower"],
    ) as writer:
        for i, name in enumerate(names):
            fish, p_fish = _class_maps(i, 0.42, 0.38, (3, 3), [(5, 8), (12, 12)])
            flower, p_flower = _class_maps(i, 0.62, 0.58, (5, 6), [(10, 10), (11, 12)])
            cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((SIZE, SIZE), np.uint8))
            writer.add(name, np.stack([fish, flower]))
            write_probability_map(
                maps, name, np.stack([p_fish, p_flower]), class_names=["Fish", "Flower"]
            )
    config = tmp_path / "infer.yml"
    config.write_text("")
    assert (
        main(_args(root, maps, config, "--masks-csv", "train.csv", "--min-sizes", "0,16,64,128"))
        == 0
    )
    assert yaml.safe_load(config.read_text())["postprocess"] == {
        "threshold": [0.4, 0.6],
        "min_size": [16, 64],
        "fill_holes": False,
    }


def test_multiclass_tunes_the_foreground_classes(tmp_path):
    """Class 1: a weak false region (p1 = 0.45, still the argmax) → threshold 0.5; class 2: 4-px
    false blobs, 25-px objects → min-size 8. Ties go to the smaller min-size and the threshold
    nearest 0 (plain argmax), which the default multiclass grid (0,0.3:0.7:0.05) includes."""
    root, maps = tmp_path / "data", tmp_path / "probabilities"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        labels = np.zeros((SIZE, SIZE), np.uint8)
        labels[4:12, 4:12] = 1
        labels[20:25, 20:25] = 2
        p = np.zeros((3, SIZE, SIZE), np.float32)
        p[0] = 0.9
        p[:, labels == 1] = [[0.1], [0.8], [0.1]]
        p[:, labels == 2] = [[0.05], [0.05], [0.9]]
        p[:, 30:40, 4:12] = [[[0.35]], [[0.45]], [[0.2]]]  # class 1 argmax, but unsure and false
        p[:, 40:42, 40:42] = [[[0.05]], [[0.05]], [[0.9]]]  # a false 4-px class-2 blob
        cv2.imwrite(str(root / "images" / f"m{i}.png"), labels)
        cv2.imwrite(str(root / "masks" / f"m{i}.png"), labels)
        write_probability_map(maps, f"m{i}", p, class_names=["background", "cell", "debris"])
    config = tmp_path / "infer.yml"
    config.write_text("postprocess:\n  min_size: 0\n")
    args = _args(root, maps, config, "--min-sizes", "0,8,64")
    del args[args.index("--thresholds") : args.index("--thresholds") + 2]
    assert main(args) == 0
    block = yaml.safe_load(config.read_text())["postprocess"]
    assert block == {"threshold": [0.0, 0.5, 0.0], "min_size": [0, 0, 8], "fill_holes": False}
    post = PostProcess.from_config(block, mode="multiclass")
    np.testing.assert_array_equal(
        post(read_probability_map(maps, "m0")), labels
    )  # the tuned values give the truth


def test_tuner_scores_equal_postprocess_then_dice(tmp_path):
    """The blob bookkeeping of `tune` gives the same per-image Dice as PostProcess + counting
    pixels."""
    rng = np.random.default_rng(0)
    probs = [
        cv2.GaussianBlur(
            rng.random((2, 40, 40)).transpose(1, 2, 0).astype(np.float32), (7, 7), 2
        ).transpose(2, 0, 1)
        for _ in range(3)
    ]
    probs = [(p - p.min()) / (p.max() - p.min()) for p in probs]
    truths = [rng.random((2, 40, 40)) > 0.5 for _ in range(3)]
    truths[0][1] = False  # an empty truth: the empty-vs-empty rule is exercised
    thresholds, sizes, fills = [0.3, 0.5, 0.7], [0, 5, 30], [True, False]
    args = (
        ["a", "b", "c"],
        dict(zip("abc", probs)).get,
        dict(zip("abc", truths)).get,
        "multilabel",
        thresholds,
        sizes,
        fills,
    )
    per_image, pooled = tune(*args), tune(*args, aggregate="dataset")
    for k in range(2):
        for i, t in enumerate(thresholds):
            for j, s in enumerate(sizes):
                post = PostProcess(threshold=t, min_size=s, fill_holes=fills, mode="multilabel")
                dice, overlap, total = [], 0, 0
                for p, truth in zip(probs, truths):
                    mask, gt = post(p)[k] > 0, truth[k]
                    dice.append(
                        1.0
                        if mask.sum() + gt.sum() == 0
                        else 2 * (mask & gt).sum() / (mask.sum() + gt.sum())
                    )
                    overlap, total = overlap + (mask & gt).sum(), total + mask.sum() + gt.sum()
                assert per_image.scores[k, i, j] == pytest.approx(np.mean(dice), abs=1e-12)
                assert pooled.scores[k, i, j] == pytest.approx(2 * overlap / total, abs=1e-12)


def test_parse_grid():
    assert parse_grid("0.3:0.7:0.05", "--thresholds") == [
        0.3,
        0.35,
        0.4,
        0.45,
        0.5,
        0.55,
        0.6,
        0.65,
        0.7,
    ]
    assert parse_grid("0.5, 0.4,0.5", "--thresholds") == [0.4, 0.5]
    assert parse_grid("0:64:16", "--min-sizes", int) == [0, 16, 32, 48, 64]
    assert parse_grid("0, 0.3:0.5:0.1", "--thresholds") == [0.0, 0.3, 0.4, 0.5]
    for text, kind in (
        ("0.7:0.3:0.1", float),
        ("0.3:0.7", float),
        ("0.2,1.5", float),
        ("4,x", int),
        ("4.5", int),
        ("", int),
    ):
        with pytest.raises(PodiumError, match="is not a grid of"):
            parse_grid(text, "--grid", kind)


def test_yaml_block_edit_keeps_the_rest():
    block = {"threshold": [0.4, 0.6], "min_size": 3, "fill_holes": False}
    text, kept = replace_yaml_block(CONFIG, "postprocess", block)
    expected = CONFIG.replace("threshold: 0.5 ", "threshold: [0.4, 0.6] ").replace(
        "fill_holes: true\n", "fill_holes: false\n  min_size: 3\n"
    )
    assert kept and text == expected
    again, kept = replace_yaml_block(
        text, "postprocess", block, "tuned by podium tune-postprocess: 2nd"
    )
    again, kept = replace_yaml_block(
        again, "postprocess", block, "tuned by podium tune-postprocess: 3rd"
    )
    assert kept and again == expected.replace(
        "postprocess:\n", "postprocess:\n  # tuned by podium tune-postprocess: 3rd\n"
    )
    multiline = "postprocess:\n  threshold:\n    - 0.1\n    - 0.2\n# next\nb: 2\n"
    text, kept = replace_yaml_block(multiline, "postprocess", block)
    assert (
        kept
        and text
        == "postprocess:\n  threshold: [0.4, 0.6]\n  min_size: "
        "3\n  fill_holes: false\n# next\nb: 2\n"
    )
    appended, kept = replace_yaml_block("a: 1  # one\n", "postprocess", {"threshold": 0.5})
    assert kept and appended == "a: 1  # one\n\npostprocess:\n  threshold: 0.5\n"
    flow, kept = replace_yaml_block(
        "{a: 1, postprocess: {threshold: 0.2}}  # flow\n", "postprocess", {"threshold": 0.5}
    )
    assert not kept and yaml.safe_load(flow) == {"a": 1, "postprocess": {"threshold": 0.5}}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda a: a.__setitem__(2, "/nonexistent/maps"),
            "probability map folder /nonexistent/maps does not exist",
        ),
        (
            lambda a: a.__setitem__(4, "/nonexistent/data"),
            "data folder /nonexistent/data does not exist",
        ),
        (
            lambda a: a.__setitem__(6, "/nonexistent/infer.yml"),
            "inference config /nonexistent/infer.yml does not exist",
        ),
        (
            lambda a: a.__setitem__(8, "0.7:0.3:0.05"),
            '--thresholds "0.7:0.3:0.05" is not a grid of probabilities',
        ),
        (
            lambda a: a.__setitem__(10, "0,16,x"),
            '--min-sizes "0,16,x" is not a grid of pixel counts',
        ),
        (
            lambda a: a.extend(["--split", "valdi"]),
            "split='valdi' is not in split file .*did you mean \"valid\"",
        ),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, binary, capsys, change, message):
    root, maps = binary
    config = tmp_path / "infer.yml"
    config.write_text(CONFIG)
    args = _args(root, maps, config)
    change(args)
    assert main(args) != 0
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("podium: error: "), errors
    assert __import__("re").search(message, errors[0]), errors[0]
    assert config.read_text() == CONFIG


def test_maps_without_masks_or_split_images_without_maps(tmp_path, binary, capsys):
    root, maps = binary
    extra = tmp_path / "maps"
    for name in ("img0", "img1", "stray"):
        write_probability_map(extra, name, read_probability_map(maps, "img0"))
    config = tmp_path / "infer.yml"
    config.write_text(CONFIG)
    assert main(_args(root, extra, config)) != 0
    assert (
        "1 name(s) have no image file" in capsys.readouterr().err
    )  # stray has no image (nor mask)
    (root / "images" / "stray.png").write_bytes((root / "images" / "img0.png").read_bytes())
    try:
        assert main(_args(root, extra, config)) != 0
        assert (
            "image " in (err := capsys.readouterr().err)
            and "stray.png has no mask; expected" in err
        )
    finally:
        (root / "images" / "stray.png").unlink()
    assert main(_args(root, extra, config, "--split", "valid")) != 0
    assert "2 of 4 images of split valid have no probability map" in capsys.readouterr().err
