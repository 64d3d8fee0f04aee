"""`podium report`: the page Chromium renders shows the logs' numbers and every image.

The run directories are written the way training writes them — the CSV logs by Catalyst's own
CSVLogger, cv_done.json / cv_summary.csv by podium cv's own writers — with hand-chosen values,
so every number on the page is checked against a value computed here. One test reads a real
`catalyst-dl run` logdir (the shared `trained_run` fixture).

Chromium (Debian's `chromium` package) is required: `make test` installs it; a plain pytest
without it stops before the first test (conftest.py), it does not skip.
"""

import base64
import csv
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from podium.cli.main import main
from podium.report import build_report
from podium.report.run_logs import read_loader_csv, split_stages

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRETS = ("tok-SECRET-42", "hunter2", "ENV-SECRET-99")
CLASSES = ("cell", "nucleus")
# valid Dice per global epoch: warmup 1-2, train 1-3; the best of the last stage is train epoch 2
VALID_DICE = [
    0.5012345678901234,
    0.6023456789012345,
    0.7034567890123456,
    0.9045678901234567,
    0.8056789012345678,
]
STAGES = {"warmup": 2, "train": 3}
MATPLOTLIB_BLUE = (0x1F, 0x77, 0xB4)  # C0, the train curve


# ---------------------------------------------------------------------------- fixtures
def _values(dice: float, loader: str, epoch: int) -> dict:
    """One loader's epoch metrics as podium's callbacks name them (two classes)."""
    if loader == "train":
        dice += 0.0213
    values = {
        "dice": dice,
        "dice/_macro": dice,
        "dice/_micro": dice + 0.0101,
        "dice/cell": dice + 0.0511,
        "dice/nucleus": dice - 0.0511,
        "iou": dice / (2 - dice),
        "iou/_macro": dice / (2 - dice),
        "iou/_micro": (dice + 0.0101) / (1.9899 - dice),
        "iou/cell": (dice + 0.0511) / (1.9489 - dice),
        "iou/nucleus": (dice - 0.0511) / (2.0511 - dice),
        "loss": 1.3 - dice,
        "loss/mean": 1.3 - dice,
        "loss/std": 0.01 * epoch,
        "lr": 0.001 if epoch <= 2 else 0.0005 / (epoch - 2),
        "momentum": 0.9,
        "images_per_s": 40.0 + epoch + (10 if loader == "valid" else 0),
        "time/loader_s": (2.0 + 0.1 * epoch) if loader == "train" else 0.25,
        "time/data_fraction": 0.05 + 0.001 * epoch,
    }
    if loader == "train":
        values["grad_norm"] = 1.0 / epoch
    return values


def _png(path: Path, color, size=(24, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def write_run(path: Path, shift: float = 0.0) -> Path:
    """A run directory with training's layout: configs/, logs/*.csv (Catalyst's CSVLogger),
    checkpoints/_metrics.json, overlays/ of two epochs, a podium predict folder."""
    from catalyst.loggers import CSVLogger

    config = {
        "args": {"logdir": str(path), "seed": 7},
        "runner": {"_target_": "podium.runners.SegmentationRunner"},
        "model": {
            "_target_": "podium.models.build_segmentation_model",
            "architecture": "unet",
            "encoder": "resnet18",
            "num_classes": 2,
            "pretrained": False,
        },
        "loggers": {
            "mlflow": {
                "_target_": "podium.loggers.MLflowLogger",
                "api_token": SECRETS[0],
                "tracking_uri": f"http://alice:{SECRETS[1]}@mlflow.example:5000",
            }
        },
        "stages": {
            name: {
                "num_epochs": epochs,
                "callbacks": {
                    "checkpoint": {
                        "_target_": "catalyst.callbacks.CheckpointCallback",
                        "loader_key": "valid",
                        "metric_key": "dice",
                        "minimize": False,
                    },
                    "overlays": {"_target_": "podium.callbacks.OverlayCallback", "metric": "dice"},
                },
            }
            for name, epochs in STAGES.items()
        },
    }
    (path / "configs").mkdir(parents=True)
    (path / "configs" / "_config.json").write_text(json.dumps(config))
    (path / "configs" / "_environment.json").write_text(json.dumps({"MY_TOKEN": SECRETS[2]}))
    (path / "configs" / "transforms_train.json").write_text(
        json.dumps({"train": {"transform": {"D4": {"p": 1.0}}}})
    )
    logger = CSVLogger(str(path / "logs"))
    epoch = 0
    for stage, epochs in STAGES.items():
        for step in range(1, epochs + 1):
            epoch += 1
            metrics = {
                loader: _values(VALID_DICE[epoch - 1] + shift, loader, epoch)
                for loader in ("train", "valid")
            }
            logger.log_metrics(metrics, scope="epoch", stage_key=stage, stage_epoch_step=step)
    logger.close_log()
    best = {loader: _values(VALID_DICE[3] + shift, loader, 4) for loader in ("train", "valid")}
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "_metrics.json").write_text(
        json.dumps({"best": {**best, "_epoch_": {}, "_score_": "train.2"}})
    )
    for epoch_folder, names in (
        ("epoch_2", ("a", "b", "c", "d")),
        ("epoch_3", ("w", "x", "y", "z")),
    ):
        folder = path / "overlays" / "train" / epoch_folder
        _png(folder / f"best_0_{names[0]}_0.9500.png", (250, 10, 10))
        _png(folder / f"best_1_{names[1]}_0.9000.png", (10, 250, 10))
        _png(folder / f"worst_0_{names[2]}_0.1000.png", (10, 10, 250))
        _png(folder / f"worst_1_{names[3]}_0.2000.png", (250, 250, 10))
    predictions = path / "predictions"
    (predictions / "overlays").mkdir(parents=True)
    for i in range(6):
        _png(predictions / "overlays" / f"p{i}.png", (40 * i, 100, 100))
    (predictions / "metrics.json").write_text(
        json.dumps(
            {
                "images": 6,
                "mode": "multiclass",
                "seconds": 1.25,
                "dice": [0.81234, 0.71234],
                "iou": [0.61234, 0.51234],
                "dice_macro": 0.76234,
                "iou_macro": 0.56234,
                "classes": list(CLASSES),
                "macro_over": list(CLASSES),
            }
        )
    )
    (predictions / "timings.json").write_text(
        json.dumps(
            {
                "images": 6,
                "seconds": 1.25,
                "images_per_second": 4.8,
                "seconds_per_image": 0.2083,
                "peak_rss_mb": 812.5,
                "peak_cuda_mb": None,
                "tiles": 0,
                "world_size": 1,
                "ranks": [],
            }
        )
    )
    return path


def csv_rows(path: Path):
    with open(path) as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


class Page(HTMLParser):
    """Text, <img> attributes, and `data-metric` → (data-value, cell text) of a DOM dump."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.images, self.cells, self.links = [], [], {}, []
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag in ("a", "link", "script", "img") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))
        if tag == "td" and "data-metric" in attrs:
            self._cell = [attrs["data-metric"], attrs.get("data-value"), ""]

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells[self._cell[0]] = (float(self._cell[1]), self._cell[2])
            self._cell = None

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def chromium(html: Path, tmp: Path, screenshot: bool = False) -> str:
    """The DOM Chromium built from the file (and a 1400×3000 screenshot beside it)."""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed to render the report: apt-get install -y chromium"
    flags = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}"]
    dom = subprocess.run(
        [*flags, "--dump-dom", html.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    if screenshot:
        shot = subprocess.run(
            [
                *flags,
                f"--screenshot={tmp / 'page.png'}",
                "--window-size=1400,3000",
                "--hide-scrollbars",
                html.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shot.returncode == 0 and (tmp / "page.png").is_file(), shot.stderr[-2000:]
    return dom.stdout


def decoded_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    data = base64.b64decode(src[len(prefix) :], validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture(scope="module")
def rendered_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = write_run(root / "run")
    out = root / "out" / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    return run, out, Page(chromium(out, root, screenshot=True)), root / "page.png"


# ---------------------------------------------------------------------------- the rendered page
def test_page_text_matches_the_logs(rendered_run):
    run, out, page, _ = rendered_run
    text = page.all_text
    for expected in (
        "Best epoch",
        "stage train, epoch 2",
        "(epoch 4 of the run)",
        "criterion valid/dice (max)",
        "encoder: resnet18",
        "num_epochs: 3",
        "metric_key: dice",
        "transforms_train.json",
    ):
        assert expected in text
    # the best epoch is train epoch 2 = the 4th row of each CSV (Catalyst's file, read here with
    # csv)
    for loader in ("train", "valid"):
        row = csv_rows(run / "logs" / f"{loader}.csv")[3]
        assert row["step"] == 2 and row["dice"] == pytest.approx(
            VALID_DICE[3] + (0.0213 if loader == "train" else 0), abs=0
        )
        for key in (
            "loss",
            "dice",
            "iou",
            "lr",
            "dice/cell",
            "dice/nucleus",
            "dice/_macro",
            "dice/_micro",
            "iou/cell",
            "iou/nucleus",
        ):
            value, shown = page.cells[f"{loader}/{key}"]
            assert value == row[key], (loader, key)
            assert shown == format(row[key], ".4g")
    assert page.cells["train/grad_norm"][0] == 1.0 / 4
    # podium predict's metrics.json: per-class table and scalars
    assert page.cells["predictions/metrics.json/dice/nucleus"][0] == 0.71234
    assert page.cells["predictions/metrics.json/iou/cell"][0] == 0.61234
    assert page.cells["predictions/metrics.json/dice_macro"][0] == 0.76234
    # timings: seconds summed over the 5 epochs of time/loader_s, from the CSV
    train = csv_rows(run / "logs" / "train.csv")
    assert sum(r["time/loader_s"] for r in train) == pytest.approx(2.0 * 5 + 0.1 * 15)
    assert (
        "predictions/timings.json" in text
        and page.cells["predictions/timings.json/images_per_second"][0] == 4.8
    )


def test_page_has_no_secrets_and_no_network_assets(rendered_run):
    _, out, page, _ = rendered_run
    html = out.read_text()
    for secret in SECRETS:
        assert secret not in html and secret not in page.all_text
    assert "api_token: '***'" in page.all_text and "http://***@mlflow.example:5000" in page.all_text
    # every reference is embedded (data:) or a relative file link; nothing is fetched
    assert page.links and all(not link.startswith(("http:", "https:", "//")) for link in page.links)
    assert "<script" not in html


def test_every_image_decodes_and_the_screenshot_shows_curves(rendered_run):
    run, out, page, screenshot = rendered_run
    alts = [image["alt"] for image in page.images]
    for image in page.images:
        decoded_png(image["src"])
    curves = [a for a in alts if a.startswith("curve: ")]
    assert curves == [
        "curve: loss",
        "curve: dice",
        "curve: iou",
        "curve: grad_norm",
        "curve: lr",
        "curve: dice per class (valid)",
        "curve: iou per class (valid)",
    ]
    # overlays of the best epoch (train/epoch_2), best by rank then worst, each linked to its file
    assert [a for a in alts if not a.startswith("curve: ")] == [
        "best 1: a",
        "best 2: b",
        "worst 1: c",
        "worst 2: d",
    ]
    overlay = decoded_png(page.images[alts.index("best 1: a")]["src"])
    assert overlay.size == (24, 32) and overlay.convert("RGB").getpixel((0, 0)) == (250, 10, 10)
    assert "a — dice 0.9500" in page.all_text
    linked = [link for link in page.links if link.endswith(".png") and not link.startswith("data:")]
    assert len(linked) == 4 and all((out.parent / link).resolve().is_file() for link in linked)
    # Chromium painted the page, the embedded curve PNGs included (matplotlib's blue lines)
    shot = np.asarray(Image.open(screenshot).convert("RGB"))
    assert shot.shape[:2] == (3000, 1400) and shot.std() > 20
    assert np.all(shot == MATPLOTLIB_BLUE, axis=-1).sum() > 200


# --------------------------------------------------------------------------- overlays, cv, real run
def test_per_image_scores_rank_the_prediction_overlays(tmp_path):
    run = write_run(tmp_path / "run")
    metrics = json.loads((run / "predictions" / "metrics.json").read_text())
    metrics["per_image"] = {
        f"p{i}": score for i, score in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.8])
    }
    (run / "predictions" / "metrics.json").write_text(json.dumps(metrics))
    page = Page(build_report(run, num_overlays=2)[0])
    alts = [image["alt"] for image in page.images if not image["alt"].startswith("curve")]
    assert alts == ["best 1: p1", "best 2: p5", "worst 1: p2", "worst 2: p4"]
    assert "ranked by the per-image dice in predictions/metrics.json" in page.all_text


def test_cv_report_fold_table_and_fold_curves(tmp_path):
    from podium.inference import cv_runs

    cv = tmp_path / "cv"
    for fold, shift in ((0, 0.0), (1, -0.05), (2, 0.01)):
        write_run(cv / f"fold_{fold}", shift)
        if fold < 2:  # fold 2 is still training
            metrics = _values(VALID_DICE[3] + shift, "valid", 4)
            cv_runs.write_cv_done(
                cv / f"fold_{fold}",
                {
                    "fold": fold,
                    "stage": "train",
                    "best_epoch": 2,
                    "global_epoch": 4,
                    "metrics": {k: metrics[k] for k in ("dice", "iou", "loss")},
                    "images": 4,
                    "seconds": {"train": 30.5 + fold, "predict": 1.5},
                },
            )
    cv_runs.write_summary(cv)
    (cv / "cv.yml").write_text(f"configs: [train.yml]\nseed: 7\napi_token: {SECRETS[0]}\n")
    out = tmp_path / "cv.html"
    assert main(["report", str(cv), "--out", str(out)]) == 0
    page = Page(chromium(out, tmp_path))
    with open(cv / "cv_summary.csv") as file:
        summary = list(csv.DictReader(file))
    assert [row["fold"] for row in summary] == ["0", "1", "mean", "std"]
    for row in summary:
        for column in ("best_epoch", "dice", "iou", "loss"):
            assert page.cells[f"cv/{row['fold']}/{column}"][0] == float(row[column])
    assert page.cells["cv/mean/dice"][0] == pytest.approx(
        np.mean([VALID_DICE[3], VALID_DICE[3] - 0.05]), abs=1e-15
    )
    assert page.cells["cv/1/seconds/train"][0] == 31.5
    assert "finished 0, 1; not finished (no cv_done.json): 2" in page.all_text
    alts = [image["alt"] for image in page.images]
    for image in page.images:
        decoded_png(image["src"])
    assert "fold curves: dice" in alts and "fold curves: loss" in alts
    assert alts.count("curve: dice") == 3  # each fold's own curves, in its section
    # each fold's section: its best epoch (train epoch 2 = 4th CSV row) and per-class values
    for k in range(3):
        row = csv_rows(cv / f"fold_{k}" / "logs" / "valid.csv")[3]
        assert page.cells[f"fold_{k}/valid/dice"][0] == row["dice"]
        assert page.cells[f"fold_{k}/valid/iou/nucleus"][0] == row["iou/nucleus"]
    assert SECRETS[0] not in out.read_text() and "cv.yml" in page.all_text


def test_real_catalyst_run(trained_run, tmp_path):
    """A logdir of `catalyst-dl run` (unet_resnet18.yml: warm-up 1 epoch + train 3): the best
    epoch is the one in checkpoints/_metrics.json, and its row of valid.csv is on the page."""
    logdir, _ = trained_run
    out = tmp_path / "report.html"
    assert main(["report", str(logdir), "--out", str(out)]) == 0
    page = Page(out.read_text())
    best = json.loads((logdir / "checkpoints" / "_metrics.json").read_text())["best"]
    stage, epoch = best["_score_"].split(".")
    assert f"stage {stage}, epoch {epoch}" in page.all_text
    rows = csv_rows(logdir / "logs" / "valid.csv")
    row = rows[1 + int(epoch) - 1]  # after the warm-up row
    for key in ("dice", "iou", "loss"):
        assert page.cells[f"valid/{key}"][0] == row[key] == best["valid"][key]
    assert page.cells["valid/dice/_micro"][0] == row["dice/_micro"]
    assert [i["alt"] for i in page.images][:2] == ["curve: loss", "curve: loss_bce"]
    for image in page.images:
        decoded_png(image["src"])


def test_real_predictions_rank_the_overlays(trained_run, nuclei_data, tmp_path):
    """`make demo`'s last two steps: podium predict's per-image Dice orders the report's best
    and worst overlays (a copy of the run by symlinks, so the shared run stays as it is)."""
    logdir, _ = trained_run
    run = tmp_path / "run"
    run.mkdir()
    for entry in logdir.iterdir():
        (run / entry.name).symlink_to(entry)
    out = run / "predictions"
    argv = ["predict", "--run", str(run), "--data", str(nuclei_data), "--split", "valid"]
    assert main([*argv, "--out", str(out)]) == 0
    per_image = json.loads((out / "metrics.json").read_text())["per_image"]
    assert len(per_image) >= 4 and len(set(v["dice"] for v in per_image.values())) > 1
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    page = Page((tmp_path / "report.html").read_text())
    by_dice = sorted(per_image, key=lambda name: -per_image[name]["dice"])
    alts = [i["alt"] for i in page.images if not i["alt"].startswith("curve")]
    assert alts[0] == f"best 1: {by_dice[0]}" and f"worst 1: {by_dice[-1]}" in alts
    assert "ranked by the per-image dice in predictions/metrics.json" in page.all_text


# ---------------------------------------------------------------------------- reading and errors
def test_csv_with_a_second_header_and_a_short_row(tmp_path):
    """A resumed run appends a header; a row with another field count is skipped with a note."""
    path = tmp_path / "valid.csv"
    path.write_text(
        "step,dice,loss\n1,0.5,1.0\n2,0.6,0.9\n1,0.7,0.8\nstep,dice,loss\n2,0.75,0.7\n3,0.8,0.6,0.1\n"
    )
    notes = []
    rows = read_loader_csv(path, notes)
    assert [step for step, _ in rows] == [1, 2, 1, 2]
    assert rows[3][1] == {"dice": 0.75, "loss": 0.7}
    assert len(notes) == 1 and "1 row(s)" in notes[0]
    stages = split_stages(rows, ["warmup", "train"])
    assert [(stage, step) for stage, step, _ in stages] == [
        ("warmup", 1),
        ("warmup", 2),
        ("train", 1),
        ("train", 2),
    ]
    assert [s for s, _, _ in split_stages(rows + [(1, {})], ["warmup", "train"])][-1] == "stage 3"


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing", "no such directory"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "is not a run directory"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is a file"),
    ],
)
def test_bad_run_dir_is_one_error_line(tmp_path, capsys, make, expected):
    path = make(tmp_path)
    assert main(["report", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("podium: error: ")
        and str(path) in err[0]
        and expected in err[0]
    )
    assert not (tmp_path / "report.html").exists()


def test_bad_files_name_the_file(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    (run / "logs" / "valid.csv").write_text("step,dice\n1,not-a-number\n")
    assert main(["report", str(run)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid.csv:2" in err[0] and "not numbers" in err[0]
    (run / "configs" / "_config.json").write_text("{broken")
    assert main(["report", str(run), "--out", str(tmp_path)]) != 0  # a directory as --out
    assert "is a directory" in capsys.readouterr().err
    assert main(["report", str(run)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "_config.json: not readable JSON" in err[0]
