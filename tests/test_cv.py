"""`podium cv` and `podium submit` on the real nuclei sample: 2 folds of 4 tiles, 1 + 1 epochs.

One module fixture trains fold 0 (`--only 0`), leaves a half-written fold_1 behind as a killed
run would, and runs the same command again: that call must keep fold 0 and train fold 1 only.
Two `catalyst-dl run` processes in all; everything else (errors, summary, submission, the
SIGTERM / parent-death handling of the training process) is cheap.
"""

import csv
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import NUCLEI_CONFIG
from podium import interrupts
from podium.cli import cv as cv_cli
from podium.cli import submit as submit_cli
from podium.cli.main import main as podium_main
from podium.datasets import rle_decode
from podium.errors import PodiumError
from podium.inference import cv_runs
from podium.inference.probability_maps import probability_map_names, read_probability_map

# one image per step: 8 optimizer steps and BatchNorm statistics that mean something, so the
# probability maps vary over the image and the submission's masks are not all empty or all full
OVERRIDES = (
    "--stages/warmup/num_epochs=1:int",
    "--stages/train/num_epochs=1:int",
    "--stages/warmup/loaders/batch_size=1:int",
    "--stages/train/loaders/batch_size=1:int",
)


def _cv_args(data: Path, folds: Path, run_dir: Path, *extra: str):
    return [
        "cv",
        "--config",
        str(NUCLEI_CONFIG),
        "--folds",
        str(folds),
        "--out",
        str(run_dir),
        f"--data/root={data}:str",
        *OVERRIDES,
        *extra,
    ]


def _digest(folder: Path):
    """{relative path: (sha256, mtime_ns)} of every file under `folder`."""
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, nuclei_data):
    root = tmp_path_factory.mktemp("cv")
    names = [
        row["name"]
        for row in csv.DictReader(open(nuclei_data / "split.csv"))
        if row["split"] == "train"
    ][:8]
    folds = root / "folds.csv"
    folds.write_text("name,fold\n" + "".join(f"{name},{i % 2}\n" for i, name in enumerate(names)))
    run_dir = root / "run"

    assert podium_main(_cv_args(nuclei_data, folds, run_dir, "--only", "0")) == 0
    fold_0 = cv_runs.fold_dir(run_dir, 0)
    assert (fold_0 / cv_runs.DONE).is_file() and not cv_runs.fold_dir(run_dir, 1).exists()
    before = _digest(fold_0)
    oof_0 = {
        n: (run_dir / cv_runs.OOF_PROBABILITIES / f"{n}.png").read_bytes()
        for n in cv_runs.fold_names(fold_0)
    }

    # what a run killed mid-training leaves: a fold directory without cv_done.json
    partial = cv_runs.fold_dir(run_dir, 1)
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "checkpoints" / "last.pth").write_bytes(b"truncated")
    (partial / "stale.txt").write_text("from the killed run")
    assert podium_main(_cv_args(nuclei_data, folds, run_dir)) == 0
    return {
        "root": root,
        "data": nuclei_data,
        "folds": folds,
        "names": names,
        "run_dir": run_dir,
        "fold_0_before": before,
        "oof_0_before": oof_0,
    }


def test_resume_trains_only_the_unfinished_fold(cv_run):
    run_dir = cv_run["run_dir"]
    fold_0, fold_1 = cv_runs.fold_dir(run_dir, 0), cv_runs.fold_dir(run_dir, 1)
    assert _digest(fold_0) == cv_run["fold_0_before"]  # not retrained, not touched
    for name, data in cv_run["oof_0_before"].items():
        assert (run_dir / cv_runs.OOF_PROBABILITIES / f"{name}.png").read_bytes() == data
    assert cv_runs.finished_folds(run_dir) == [fold_0, fold_1]
    # fold 1 was trained from scratch: the junk checkpoint is gone, a real one is there
    assert not (fold_1 / "stale.txt").exists()
    assert (fold_1 / "checkpoints" / "last.pth").read_bytes() != b"truncated"
    assert (fold_1 / "checkpoints" / "best.pth").is_file()
    # each fold trained on the other fold and validated on its own (Catalyst's resolved config)
    for k, path in enumerate((fold_0, fold_1)):
        data = json.loads((path / "configs" / "_config.json").read_text())["data"]
        assert data["fold"] == k and Path(data["split_file"]) == (run_dir / "folds.csv").resolve()
    # the resolved settings are kept: configs, folds.csv, cv.yml
    assert (run_dir / "folds.csv").read_bytes() == cv_run["folds"].read_bytes()
    assert (run_dir / "configs" / NUCLEI_CONFIG.name).read_text() == NUCLEI_CONFIG.read_text()
    settings = yaml.safe_load((run_dir / "cv.yml").read_text())
    assert settings["fold_ids"] == [0, 1] and settings["overrides"][1:] == list(OVERRIDES)


def test_oof_maps_cover_every_image_once(cv_run):
    run_dir, names = cv_run["run_dir"], cv_run["names"]
    per_fold = [cv_runs.fold_names(p) for p in cv_runs.finished_folds(run_dir)]
    assert per_fold == [
        names[0::2],
        names[1::2],
    ]  # the validation images are the fold's rows, nothing else
    assert sorted(probability_map_names(run_dir / cv_runs.OOF_PROBABILITIES)) == sorted(names)
    image = cv2.imread(str(cv_run["data"] / "images" / f"{names[0]}.png"), cv2.IMREAD_UNCHANGED)
    raw = cv2.imread(
        str(run_dir / cv_runs.OOF_PROBABILITIES / f"{names[0]}.png"), cv2.IMREAD_UNCHANGED
    )
    assert (
        raw.dtype == np.uint8 and raw.shape == image.shape[:2]
    )  # podium predict's layout, original size


def test_cv_done_matches_catalysts_best_checkpoint(cv_run):
    for path in cv_runs.finished_folds(cv_run["run_dir"]):
        done = cv_runs.read_cv_done(path)
        best = json.loads((path / "checkpoints" / "_metrics.json").read_text())["best"]
        stage, epoch = best["_score_"].rsplit(
            ".", 1
        )  # Catalyst names the best checkpoint "<stage>.<epoch>"
        assert (done["stage"], done["best_epoch"]) == (stage, int(epoch))
        assert done["metrics"]["dice"] == pytest.approx(best["valid"]["dice"], abs=1e-7)
        assert done["metrics"]["loss"] == pytest.approx(best["valid"]["loss"], abs=1e-7)
        # the OOF maps are thresholded at 0.5 over the same images: Dice as Catalyst's valid Dice
        assert done["metrics"]["oof_dice"] == pytest.approx(best["valid"]["dice"], abs=1e-5)
        assert done["images"] == 4
        assert (
            json.loads((path / cv_runs.OOF_METRICS).read_text())["dice_macro"]
            == done["metrics"]["oof_dice"]
        )


def test_cv_summary_mean_and_std_are_numpys(cv_run):
    with open(cv_run["run_dir"] / cv_runs.SUMMARY, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["fold"] for row in rows] == ["0", "1", "mean", "std"]
    header = list(rows[0])
    assert header[:4] == ["fold", "best_epoch", "dice", "oof_dice"]
    done = [cv_runs.read_cv_done(p) for p in cv_runs.finished_folds(cv_run["run_dir"])]
    for row, d in zip(rows[:2], done):
        assert (
            float(row["dice"]) == d["metrics"]["dice"] and int(row["best_epoch"]) == d["best_epoch"]
        )
    for column in header[1:]:
        values = np.array([float(row[column]) for row in rows[:2]])
        assert float(rows[2][column]) == pytest.approx(np.mean(values), rel=1e-12, abs=1e-15)
        assert float(rows[3][column]) == pytest.approx(np.std(values), rel=1e-12, abs=1e-15)


def test_submit_writes_a_submission_of_the_fold_ensemble(cv_run, tmp_path):
    run_dir = cv_run["run_dir"]
    test_dir = tmp_path / "test"
    (test_dir / "images").mkdir(parents=True)
    valid = [
        row["name"]
        for row in csv.DictReader(open(cv_run["data"] / "split.csv"))
        if row["split"] == "valid"
    ]
    for name in valid:
        shutil.copy(cv_run["data"] / "images" / f"{name}.png", test_dir / "images")
    # a one-value grid at the OOF median, so the barely trained models give masks with both classes
    maps = run_dir / cv_runs.OOF_PROBABILITIES
    median = float(np.median([read_probability_map(maps, n) for n in cv_run["names"]]))
    threshold = round(min(max(median, 0.05), 0.95), 2)
    out = tmp_path / "sub"
    assert (
        podium_main(
            [
                "submit",
                "--cv",
                str(run_dir),
                "--data",
                str(test_dir),
                "--out",
                str(out),
                "--tta",
                "flip",
                "--checkpoint",
                "both",
                "--thresholds",
                str(threshold),
                "--min-sizes",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )

    infer = yaml.safe_load((out / "infer.yml").read_text())
    folds = [str(p) for p in cv_runs.finished_folds(run_dir)]
    assert [(m["run"], m["checkpoint"]) for m in infer["models"]] == [
        (f, c) for f in folds for c in ("best", "last")
    ]
    assert infer["postprocess"]["threshold"] == threshold and infer["tta"] == "flip"
    assert (
        yaml.safe_load((out / "predict_config.yml").read_text()) == infer
    )  # the YAML written is the one used
    with open(out / "submission.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["ImageId"] for row in rows) == sorted(valid)
    nontrivial = 0
    for row in rows:
        mask = cv2.imread(str(out / "masks" / f"{row['ImageId']}.png"), cv2.IMREAD_UNCHANGED) > 0
        assert np.array_equal(rle_decode(row["EncodedPixels"], mask.shape).astype(bool), mask)
        nontrivial += 0 < mask.sum() < mask.size
    assert nontrivial > 0


def test_submit_tunes_as_tune_postprocess_does(cv_run, tmp_path):
    """The tuning of podium submit = `podium tune-postprocess` over the same OOF maps and masks."""
    from podium.cli.submit import tune_on_oof

    run_dir = cv_run["run_dir"]
    config = tmp_path / "infer.yml"
    config.write_text("postprocess:\n  threshold: 0.5\n  min_size: 0\n  fill_holes: false\n")
    assert (
        podium_main(
            [
                "tune-postprocess",
                "--probabilities",
                str(run_dir / cv_runs.OOF_PROBABILITIES),
                "--data",
                str(cv_run["data"]),
                "--thresholds",
                "0.3:0.7:0.05",
                "--min-sizes",
                "0,4,16,64",
                "--config",
                str(config),
                "--aggregate",
                "dataset",
            ]
        )
        == 0
    )
    expected = yaml.safe_load(config.read_text())["postprocess"]
    block, _, images = tune_on_oof(
        run_dir,
        cv_runs.finished_folds(run_dir),
        {"fill_holes": False},
        [0.3 + 0.05 * i for i in range(9)],
        [0, 4, 16, 64],
        "dice",
        "dataset",
    )
    assert images == 8
    assert block["min_size"] == expected["min_size"] and block["threshold"] == pytest.approx(
        expected["threshold"]
    )


def test_bad_input_is_one_clear_error(cv_run, tmp_path):
    data, folds, run_dir = cv_run["data"], cv_run["folds"], cv_run["run_dir"]
    with pytest.raises(PodiumError, match="missing.csv does not exist"):
        cv_cli.run(_namespace(data, tmp_path / "missing.csv", tmp_path / "r"))
    no_fold = tmp_path / "split_only.csv"
    no_fold.write_text("name,split\na,train\n")
    with pytest.raises(PodiumError, match="has no fold column"):
        cv_cli.run(_namespace(data, no_fold, tmp_path / "r"))
    with pytest.raises(
        PodiumError, match="--only names fold 5, which is not in .*folds.csv; its folds are 0, 1"
    ):
        cv_cli.run(_namespace(data, folds, tmp_path / "r", only="5"))
    with pytest.raises(PodiumError, match="set by podium cv itself"):
        cv_cli.run(_namespace(data, folds, tmp_path / "r", overrides=["--data/fold=1:int"]))
    # the same RUN_DIR with another config: refused before anything is trained or deleted
    before = _digest(run_dir)
    with pytest.raises(PodiumError, match=r"other settings \(overrides "):
        cv_cli.run(
            _namespace(
                data,
                folds,
                run_dir,
                overrides=[*OVERRIDES[:-1], "--stages/train/loaders/batch_size=2:int"],
            )
        )
    assert _digest(run_dir) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(PodiumError, match="is not a podium cv run directory"):
        cv_cli.run(_namespace(data, folds, other))
    # submit: no cv run, no finished fold
    with pytest.raises(PodiumError, match="is not a podium cv run directory"):
        submit_cli.run(_submit_namespace(other, data))
    empty = tmp_path / "empty_cv"
    empty.mkdir()
    shutil.copy(run_dir / cv_runs.SETTINGS, empty / cv_runs.SETTINGS)
    (empty / "fold_0").mkdir()  # started, never finished
    with pytest.raises(PodiumError, match="has no finished fold"):
        submit_cli.run(_submit_namespace(empty, data))


def _submit_namespace(run_dir, data):
    import argparse

    return argparse.Namespace(
        cv=Path(run_dir),
        data=Path(data),
        out=None,
        tta=None,
        checkpoint="best",
        metric="dice",
        aggregate="image",
        thresholds=None,
        min_sizes="0",
        predict_config=None,
        progress=False,
    )


def _namespace(data, folds, out, only=None, overrides=None):
    import argparse

    overrides = (
        [f"--data/root={data}:str", *OVERRIDES]
        if overrides is None
        else [f"--data/root={data}:str", *overrides]
    )
    return argparse.Namespace(
        configs=[str(NUCLEI_CONFIG)],
        folds=Path(folds),
        only=only,
        out=Path(out),
        tta=None,
        predict_config=None,
        seed=None,
        overrides=overrides,
    )


# ---------------------------------------------------------------------------- the training process
_SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"


def _wait_for(path: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_sigterm_stops_the_training_process(tmp_path):
    """`kill <podium cv>` must not leave catalyst-dl training: run_child stops it, then
    re-raises."""
    pid_file = tmp_path / "pid"
    previous = signal.getsignal(signal.SIGTERM)

    def kill_me():
        _wait_for(pid_file)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_me, daemon=True).start()
    with pytest.raises(interrupts.Interrupted) as stopped:
        with interrupts.handled():
            cv_cli.run_child([sys.executable, "-c", _SLEEPER, str(pid_file)])
    child = int(pid_file.read_text())
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert stopped.value.signum == signal.SIGTERM and interrupts.exit_status(stopped.value) == 143
    assert not alive
    assert (
        signal.getsignal(signal.SIGTERM) == previous
    )  # the handler lives only while the command runs


def test_ctrl_c_in_a_fold_is_one_line_from_podium_cv(cv_run, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while fold 0 trains:
    exit 130 and one line, podium cv's (the training process is quiet): the fold, what is kept
    and the command that goes on; no training process is left."""
    run_dir = tmp_path / "run"
    slow = "{'_target_': 'signal_sender.Slow', 'stage': 'train', 'epoch': 1, 'seconds': 3}"
    args = _cv_args(
        cv_run["data"],
        cv_run["folds"],
        run_dir,
        "--only",
        "0",
        f"--stages/train/callbacks/slow={slow}:dict",
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "podium"), *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        warmup_log = cv_runs.fold_dir(run_dir, 0) / "logs" / "valid.csv"
        deadline = time.monotonic() + 400
        while not warmup_log.is_file():  # stage warmup is done: stage train's slow batches run
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][
                -3000:
            ]
            time.sleep(0.1)
        time.sleep(2)
        children = [
            int(p)
            for p in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        ]
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "interrupted" in line or "rror" in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert lines[0].startswith(
        f"podium cv: interrupted by Ctrl-C (SIGINT) in fold 0; no fold had finished in {run_dir}; "
        f"continue with the same command"
    )
    assert lines[0].endswith(shlex.join(["podium", *args]))
    assert children and not [pid for pid in children if _alive(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_training_process_dies_with_a_killed_parent(tmp_path):
    """SIGKILL of podium cv (no handler runs): Linux SIGTERMs the training process
    (PR_SET_PDEATHSIG)."""
    pid_file = tmp_path / "pid"
    preexec = cv_cli._parent_death_signal()
    parent = os.fork()
    if parent == 0:  # the forked "podium cv": start the child, then wait to be killed
        try:
            subprocess.Popen([sys.executable, "-c", _SLEEPER, str(pid_file)], preexec_fn=preexec)
            time.sleep(60)
        finally:
            os._exit(0)
    child = _wait_for(pid_file)
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive


def test_example_prediction_settings_are_valid(tmp_path):
    """configs/nuclei/cv.yml is accepted as --predict-config and keeps its submission options."""
    from conftest import REPO

    settings = cv_cli._predict_settings(
        REPO / "configs" / "nuclei" / "cv.yml", "d4", tmp_path / "run"
    )
    assert settings["tta"] == "d4" and settings["postprocess"] == {"fill_holes": True}
    assert "path" not in settings["outputs"]["submission"]  # podium submit sets it
    bad = tmp_path / "bad.yml"
    bad.write_text("tta: d5\n")
    with pytest.raises(PodiumError, match="d5"):
        cv_cli._predict_settings(bad, None, tmp_path / "run")
