"""No secret from the environment ends up in what a run and a prediction write, or print.

Random, distinctive values are set as NEPTUNE_API_TOKEN (a neptune token whose api_key is a
secret), MLFLOW_TRACKING_PASSWORD and MLFLOW_TRACKING_URI (`http://user:PASSWORD@host`, a
server that is down), for a real `catalyst-dl run` of the focal+dice nuclei config (two stages
of one epoch) with CSV + TensorBoard, podium's NeptuneLogger offline, one MLflowLogger into a
sqlite store (artifacts beside it) and one at the credentialed server from the environment —
then for `podium predict` of the run. Every file below the test folder (run directory with
`.neptune/`, the MLflow database and artifacts, the predictions; binary and hidden files) and
both commands' stdout/stderr are searched for each value. (test_neptune.py checks the token of
an async neptune run alone.)
"""

import base64
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from conftest import BIN
from tracking_helpers import NO_TELEMETRY, SHORT, files_containing, merged_config, tiny_nuclei


def _command(args, cwd: Path, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *map(str, args[1:])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def secret_run(nuclei_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("secrets")
    data = tiny_nuclei(nuclei_data, folder / "data")
    neptune_key = f"neptune-key-{secrets.token_hex(16)}"
    token = base64.b64encode(
        json.dumps(
            {
                "api_address": "http://127.0.0.1:9",
                "api_url": "http://127.0.0.1:9",
                "api_key": neptune_key,
            }
        ).encode()
    ).decode()
    password = f"mlflow-pw-{secrets.token_hex(16)}"
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        **NO_TELEMETRY,
        NEPTUNE_API_TOKEN=token,
        NEPTUNE_PROJECT="podium/secrets",
        MLFLOW_TRACKING_USERNAME="alice",
        MLFLOW_TRACKING_PASSWORD=password,
        MLFLOW_TRACKING_URI=f"http://alice:{password}@127.0.0.1:9",
    )  # port 9: nothing listens
    config = merged_config(
        folder / "config.yml",
        {
            "loggers": {
                "neptune": {
                    "_target_": "podium.loggers.NeptuneLogger",
                    "mode": "offline",
                    "log_checkpoint": True,
                    "run_kwargs": {"capture_hardware_metrics": False, "git_ref": False},
                },
                "mlflow": {
                    "_target_": "podium.loggers.MLflowLogger",
                    "experiment": "secrets",
                    "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
                    "log_checkpoint": True,
                },
                "mlflow_remote": {
                    "_target_": "podium.loggers.MLflowLogger",
                    "experiment": "secrets",
                    "connect_timeout": 1,
                },
            }
        },
    )
    logdir = folder / "run"
    # cwd = folder: MLflow puts the sqlite store's artifacts into ./mlruns
    train = _command(
        [
            "catalyst-dl",
            "run",
            "--config",
            config,
            f"--args/logdir={logdir}:str",
            f"--data/root={data}:str",
            *SHORT,
        ],
        folder,
        env,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    predict = _command(
        [
            "podium",
            "predict",
            "--no-progress",
            "--run",
            logdir,
            "--data",
            data,
            "--split",
            "valid",
            "--out",
            folder / "predictions",
        ],
        folder,
        env,
    )
    assert predict.returncode == 0, predict.stderr[-3000:]
    return folder, logdir, (train, predict), (token, neptune_key, password)


def test_every_logger_wrote_its_files(secret_run):
    """The places searched below were really written (else the search proves nothing)."""
    folder, logdir, (train, _), _ = secret_run
    assert list((logdir / "logs").glob("*.csv")) and (logdir / "tensorboard").is_dir()
    assert list((logdir / ".neptune" / "offline").glob("run__*/data-*.log"))
    assert (folder / "mlflow.db").stat().st_size > 0
    assert list((folder / "mlruns").rglob("best.pth"))  # the sqlite store's checkpoint artifact
    assert (folder / "predictions" / "metrics.json").is_file() and list(
        (folder / "predictions").rglob("*.png")
    )
    assert "MLflow server http://127.0.0.1:9" in train.stderr and "unreachable" in train.stderr


def test_the_search_reads_binary_and_hidden_files(secret_run):
    folder, logdir, _, _ = secret_run
    found = files_containing(folder, "model_state_dict")  # inside the zip of a checkpoint
    assert logdir / "checkpoints" / "best.pth" in found
    found = files_containing(folder, str(logdir / "progress.png"))  # neptune's queued upload
    assert any(".neptune" in path.parts for path in found)


@pytest.mark.parametrize("which", ["neptune token", "neptune api_key", "mlflow password"])
def test_no_secret_in_any_file_or_output(secret_run, which):
    folder, _, commands, needles = secret_run
    needle = dict(zip(["neptune token", "neptune api_key", "mlflow password"], needles))[which]
    assert files_containing(folder, needle) == []
    for command in commands:
        assert needle not in command.stdout and needle not in command.stderr
