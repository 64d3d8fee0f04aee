"""podium.loggers.MLflowLogger against a real `mlflow server` on 127.0.0.1.

The server (sqlite backend store, served artifacts, both in a temp folder) starts once for the
module; one short real run (`catalyst-dl run` in this process, two stages of one epoch) of the
focal+dice nuclei config with `configs/loggers/mlflow.yml` merged on top logs into it through
MLFLOW_TRACKING_URI, and everything is read back with
`MlflowClient`: metric histories equal the CSV logs exactly, the parameters are the resolved
config, the artifacts are the run directory's files byte for byte.
"""

import os
import pickle
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO
from tracking_helpers import NO_TELEMETRY, csv_logs, merged_config, run_in_process, tiny_nuclei

from podium.errors import PodiumError
from podium.loggers import MLflowLogger, check_logger_config
from podium.loggers._params import flatten
from podium.runners.engines import free_port

SNIPPET = REPO / "configs" / "loggers" / "mlflow.yml"
EXPERIMENT = "podium-tests"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free loopback port; stopped (its whole process group) at the end."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, **NO_TELEMETRY, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module", autouse=True)
def no_telemetry():
    """MLflow clients in this process (the tests' own) report nothing either."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in NO_TELEMETRY.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server)


@pytest.fixture(scope="module")
def logged_run(mlflow_server, client, nuclei_data, tmp_path_factory):
    """A run (in this process) with the shipped logger snippet and MLFLOW_TRACKING_URI set."""
    folder = tmp_path_factory.mktemp("mlflow_run")
    tiny = tiny_nuclei(nuclei_data, folder / "nuclei")
    logdir = folder / "run"
    config = merged_config(folder / "config.yml", SNIPPET)
    warnings = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        patch.setattr("podium.loggers._base.warn", warnings.append)
        run_in_process(logdir, tiny, config, f"--loggers/mlflow/experiment={EXPERIMENT}:str")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return logdir, runs[0], warnings


def test_run_is_finished_and_named_after_the_run_directory(logged_run):
    logdir, run, warnings = logged_run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == logdir.name
    assert run.data.tags["podium.logdir"] == str(logdir.resolve())
    assert run.data.tags["model"] == "unet-resnet18"  # from the snippet's tags
    assert warnings == []


def test_metric_histories_equal_the_csv_logs_exactly(logged_run, client):
    logdir, run, _ = logged_run
    expected = {}
    for loader, frame in csv_logs(logdir).items():
        for column in frame.columns.drop("step"):
            # step = the global epoch: 1 (warmup), 2 (train), although the CSV restarts per stage
            expected[f"{loader}/{column}"] = list(zip([1, 2], frame[column].tolist()))
    assert "valid/dice/_macro" in expected and "train/loss_focal" in expected
    assert set(run.data.metrics) == set(expected)
    for key, values in expected.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == values, key


def test_parameters_are_the_resolved_config(logged_run):
    logdir, run, _ = logged_run
    params = run.data.params
    assert params["model/encoder"] == "resnet18"
    assert params["stages/train/num_epochs"] == "1"  # the command-line override, resolved
    assert params["loggers/mlflow/experiment"] == EXPERIMENT
    assert params["args/logdir"] == str(logdir)
    assert params["data/train_transforms"].startswith('[{"RandomCrop"')  # lists: one JSON value


def test_artifacts_are_the_run_directorys_files(logged_run, client, tmp_path):
    logdir, run, _ = logged_run
    run_id = run.info.run_id
    local = Path(client.download_artifacts(run_id, "", str(tmp_path)))
    config = yaml.safe_load((local / "config.yml").read_text())
    assert config["model"]["encoder"] == "resnet18" and config["stages"]["train"]["num_epochs"] == 1
    assert (local / "progress.png").read_bytes() == (logdir / "progress.png").read_bytes()
    best = local / "checkpoints" / "best.pth"
    assert best.read_bytes() == (logdir / "checkpoints" / "best.pth").read_bytes()
    overlays = sorted(p.relative_to(local).as_posix() for p in (local / "overlays").rglob("*.png"))
    on_disk = sorted(p.relative_to(logdir).as_posix() for p in (logdir / "overlays").rglob("*.png"))
    assert overlays == on_disk and len(on_disk) == 8  # 2 best + 2 worst per epoch, 2 epochs


def test_a_pickled_logger_logs_into_the_same_run(mlflow_server, client, tmp_path):
    """What Catalyst's spawn-DDP does: the worker's copy carries the run id, not the client."""
    logger = MLflowLogger(
        experiment=EXPERIMENT + "-pickle",
        tracking_uri=mlflow_server,
        logdir=str(tmp_path),
        name="pickled",
    )
    logger.log_hparams({"model": {"encoder": "resnet18"}}, scope="experiment")
    copy = pickle.loads(pickle.dumps(logger))
    assert copy.logger is None and copy.run_id == logger.run_id
    copy.log_metrics({"valid": {"dice": 0.25}}, scope="epoch", global_epoch_step=1)
    copy.close_log()  # a DDP worker at the end of its stage: the run stays open
    logger.log_metrics({"valid": {"dice": 0.5}}, scope="epoch", global_epoch_step=2)
    logger.close_log(scope="experiment")
    history = [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "valid/dice")]
    assert sorted(history) == [(1, 0.25), (2, 0.5)]
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"model/encoder": "resnet18"}


def test_an_unreachable_server_costs_one_warning_not_the_training(tmp_path, caplog):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    logger = MLflowLogger(tracking_uri=url, logdir=str(tmp_path), connect_timeout=2)
    logger.log_hparams({"a": 1}, scope="experiment")
    logger.log_metrics({"valid": {"dice": 0.5}}, scope="epoch", global_epoch_step=1)
    logger.close_log(scope="experiment")
    warnings = [r.message for r in caplog.records if r.message.startswith("podium: warning:")]
    assert len(warnings) == 1 and url in warnings[0] and "unreachable" in warnings[0]
    assert logger.run_id is None


def test_credentials_belong_in_the_environment(monkeypatch):
    block = {
        "_target_": "podium.loggers.MLflowLogger",
        "tracking_uri": "https://me:s3cret@ml.example",
    }
    with pytest.raises(PodiumError) as error:
        check_logger_config({"loggers": {"mlflow": block}})
    assert "MLFLOW_TRACKING_USERNAME" in str(error.value) and "s3cret" not in str(error.value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(PodiumError, match="set MLFLOW_TRACKING_URI"):
        check_logger_config({"loggers": {"mlflow": {"_target_": "podium.loggers.MLflowLogger"}}})


def test_flat_parameters_scrub_secrets_anywhere():
    config = {
        "data": {"root": "d", "s3": {"aws_secret_access_key": "k", "password": "p"}},
        "model": {"encoder": "resnet18", "input_key": "image"},
        "t": [1, {"a": 2}],
    }
    assert flatten(config) == {
        "data/root": "d",
        "data/s3/aws_secret_access_key": "***",
        "data/s3/password": "***",
        "model/encoder": "resnet18",
        "model/input_key": "image",
        "t": '[1,{"a":2}]',
    }
