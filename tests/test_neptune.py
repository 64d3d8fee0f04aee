"""podium.loggers.NeptuneLogger with the neptune 1.14 client: debug, offline, an unreachable server.

Short real runs of the focal+dice nuclei config (two stages of one epoch, one batch each):
- debug mode (in memory, in this process): every value read back with `fetch_values` equals
  the CSV log;
- async mode against a closed loopback port (`catalyst-dl run` in a subprocess): the training
  finishes, the user is told which server failed, and the run is logged offline: the files on
  disk (`<logdir>/.neptune/offline/...`) hold the CSV's values, the overlays, progress.png and
  the checkpoint; the API token is in no file of the run and in no output.
Offline mode configured as such, secrets, options, pickling and ranks: without training.
"""

import base64
import json
import pickle
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO, catalyst_run_in_process
from tracking_helpers import (
    csv_logs,
    files_containing,
    merged_config,
    run_in_process,
    run_subprocess,
    tiny_nuclei,
)

from podium.errors import PodiumError
from podium.loggers import NeptuneLogger, check_logger_config
from podium.loggers.neptune import field_name
from podium.runners.engines import free_port

QUIET = {"capture_hardware_metrics": False, "git_ref": False}


@pytest.fixture(scope="module")
def tiny(nuclei_data, tmp_path_factory):
    return tiny_nuclei(nuclei_data, tmp_path_factory.mktemp("tiny") / "nuclei")


def token_for(url: str, secret: str) -> str:
    """A neptune API token (base64 JSON) for a server at `url`, holding `secret` as its key."""
    content = {"api_address": url, "api_url": url, "api_key": secret}
    return base64.b64encode(json.dumps(content).encode()).decode()


def neptune_block(**options):
    return {"loggers": {"neptune": {"_target_": "podium.loggers.NeptuneLogger", **options}}}


def offline_operations(logdir: Path):
    """The operations neptune queued for `neptune sync`, one dict per line of data-*.log."""
    runs = sorted((logdir / ".neptune" / "offline").glob("run__*"))
    assert len(runs) == 1, runs
    assert (runs[0] / "metadata.json").is_file()
    operations = []
    for log in sorted(runs[0].glob("data-*.log")):
        operations += [json.loads(line)["obj"] for line in log.read_text().splitlines() if line]
    return operations


def float_series(operations):
    """{field path: [(step, value), ...]} of every LogFloats operation."""
    series = {}
    for op in operations:
        if op["type"] == "LogFloats":
            series.setdefault("/".join(op["path"]), []).extend(
                (v["step"], v["value"]) for v in op["values"]
            )
    return series


def expected_epoch_series(logdir: Path):
    """What NeptuneLogger must have logged per epoch, from the CSV logs: {field: values}."""
    expected = {}
    for loader, frame in csv_logs(logdir).items():
        name = "epoch" if loader == "_epoch_" else loader
        for column in frame.columns.drop("step"):
            expected[f"metrics/{name}/{field_name(column)}"] = frame[column].tolist()
    return expected


# -- debug mode: values read back with fetch_values --------------------------------------------
@pytest.fixture(scope="module")
def debug_run(tiny, tmp_path_factory):
    """An in-process run in debug mode; the neptune run is read just before `stop()`."""
    folder = tmp_path_factory.mktemp("neptune_debug")
    logdir = folder / "run"
    config = merged_config(
        folder / "config.yml",
        neptune_block(
            mode="debug", fold=3, tags=["unit-test"], log_batch_metrics=True, run_kwargs=QUIET
        ),
    )
    seen = {}
    original = NeptuneLogger._close

    def read_then_close(self, failed, end_of_run):
        run = self.logger
        fields = []

        def walk(prefix, node):
            for key, value in node.items():
                path = f"{prefix}/{key}" if prefix else key
                walk(path, value) if isinstance(value, dict) else fields.append(path)

        walk("", run.get_structure())
        seen.update(
            fields=set(fields),
            series={
                p: run[p].fetch_values()["value"].tolist()
                for p in fields
                if p.startswith(("metrics/", "batch/"))
            },
            parameters=run["parameters"].fetch(),
            tags=run["sys/tags"].fetch(),
            fold=run["fold"].fetch(),
            name=run["sys/name"].fetch(),
            failed=failed,
        )
        original(self, failed, end_of_run)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NeptuneLogger, "_close", read_then_close)
        run_in_process(logdir, tiny, config)
    return logdir, seen


def test_debug_mode_epoch_metrics_equal_the_csv_log(debug_run):
    logdir, seen = debug_run
    expected = expected_epoch_series(logdir)
    assert "metrics/valid/dice._macro" in expected  # `/` in keys: no field/namespace clash
    logged = {p: v for p, v in seen["series"].items() if p.startswith("metrics/")}
    assert logged == expected  # exact: the same floats, both stages, every loader and key
    assert all(len(values) == 2 for values in logged.values())


def test_debug_mode_logs_batches_config_fold_tags_and_files(debug_run):
    logdir, seen = debug_run
    # one batch per loader and epoch: two values per batch metric
    assert len(seen["series"]["batch/train/loss"]) == 2
    assert len(seen["series"]["batch/valid/loss"]) == 2
    parameters = seen["parameters"]
    assert parameters["model"]["encoder"] == "resnet18"
    assert parameters["stages"]["train"]["num_epochs"] == 1  # the resolved (overridden) config
    assert parameters["loggers"]["neptune"]["mode"] == "debug"
    assert seen["fold"] == 3 and seen["tags"] == {"unit-test", "fold-3"}
    assert seen["name"] == logdir.name
    files = {"config", "progress", "images/overlays/warmup", "images/overlays/train"}
    assert files <= seen["fields"]
    assert "checkpoints/best" not in seen["fields"]  # log_checkpoint is off by default
    assert seen["failed"] is False


# -- async mode with the server down: training finishes, logged offline, the user told --------
@pytest.fixture(scope="module")
def unreachable_run(tiny, tmp_path_factory):
    """`catalyst-dl run` (a subprocess, as a user runs it) in async mode against a closed port."""
    folder = tmp_path_factory.mktemp("neptune_unreachable")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    secret = f"neptune-secret-{uuid.uuid4().hex}"
    token = token_for(url, secret)
    logdir = folder / "run"
    config = merged_config(
        folder / "config.yml",
        neptune_block(mode="async", connect_timeout=2, log_checkpoint=True, run_kwargs=QUIET),
    )
    result = run_subprocess(
        logdir,
        tiny,
        config,
        env={"NEPTUNE_API_TOKEN": token, "NEPTUNE_PROJECT": "podium/tests"},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir, result, url, (secret, token)


def test_unreachable_server_training_finishes_and_the_user_is_told(unreachable_run):
    logdir, result, url, _ = unreachable_run
    warnings = [line for line in result.stderr.splitlines() if line.startswith("podium: warning:")]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert url in warnings[0] and "unreachable" in warnings[0]
    assert f"logging offline into {logdir / '.neptune'}" in warnings[0]
    assert f"neptune sync --path {logdir} --project podium/tests" in warnings[0]
    assert (logdir / "checkpoints" / "best.pth").is_file()  # the training ran to its end


def test_offline_run_on_disk_holds_the_values_and_files(unreachable_run):
    """Nothing is lost: `.neptune/offline/` holds what `neptune sync` will upload."""
    logdir, _, _, _ = unreachable_run
    operations = offline_operations(logdir)
    series = float_series(operations)
    for field, values in expected_epoch_series(logdir).items():
        assert series[field] == list(zip([1, 2], values)), field  # step = global epoch
    uploads = {"/".join(op["path"]): op for op in operations if op["type"] == "UploadFile"}
    assert uploads["progress"]["file_path"] == str(logdir / "progress.png")
    assert uploads["checkpoints/best"]["file_path"] == str(logdir / "checkpoints" / "best.pth")
    assert "config" in uploads
    overlays = [
        (op["path"][-1], value["value"]["name"])
        for op in operations
        if op["type"] == "LogImages"
        for value in op["values"]
    ]
    on_disk = sorted(
        (p.parts[-3], f"{p.parts[-2]}/{p.stem}") for p in (logdir / "overlays").rglob("*.png")
    )
    assert sorted(overlays) == on_disk and len(on_disk) == 8  # 2 best + 2 worst, 2 epochs


def test_the_api_token_is_in_no_file_of_the_run_and_no_output(unreachable_run):
    logdir, result, _, needles = unreachable_run
    for needle in needles:  # the token and the key inside it
        assert files_containing(logdir, needle) == []
        assert needle not in result.stdout and needle not in result.stderr


def test_offline_mode_writes_the_run_into_the_run_directory(tmp_path, monkeypatch):
    """`mode: offline` as Catalyst drives a logger: the operations land in <logdir>/.neptune."""
    monkeypatch.delenv("NEPTUNE_DATA_DIRECTORY", raising=False)
    (tmp_path / "overlays" / "train" / "epoch_1").mkdir(parents=True)
    (tmp_path / "checkpoints").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "overlays" / "train" / "epoch_1" / "best_0_a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "progress.png")
    (tmp_path / "checkpoints" / "best.pth").write_bytes(b"weights")
    logger = NeptuneLogger(
        mode="offline", logdir=str(tmp_path), log_checkpoint=True, tags=["t"], run_kwargs=QUIET
    )
    logger.log_hparams({"model": {"encoder": "resnet18"}, "data": {"fold": 2}}, scope="experiment")
    logger.log_metrics(
        {"train": {"loss": 0.5}, "valid": {"dice/_macro": 0.25}, "_epoch_": {}},
        scope="epoch",
        global_epoch_step=1,
    )
    logger.log_metrics({"train": {"loss": 0.75}}, scope="batch", global_batch_step=3)  # off
    logger.close_log(scope="experiment")
    assert logger.mode_used == "offline"

    operations = offline_operations(tmp_path)
    assert float_series(operations) == {
        "metrics/train/loss": [(1, 0.5)],
        "metrics/valid/dice._macro": [(1, 0.25)],
    }
    by_path = {"/".join(op["path"]): op for op in operations}
    assert by_path["parameters/model/encoder"]["value"] == "resnet18"
    assert by_path["fold"]["value"] == 2  # from data/fold of the config
    assert sorted(by_path["sys/tags"]["values"]) == ["fold-2", "t"]
    assert by_path["podium/logdir"]["value"] == str(tmp_path.resolve())
    assert by_path["checkpoints/best"]["file_path"] == str(tmp_path / "checkpoints" / "best.pth")
    assert by_path["progress"]["file_path"] == str(tmp_path / "progress.png")
    assert by_path["images/overlays/train"]["values"][0]["value"]["name"] == "epoch_1/best_0_a"


def test_a_server_that_fails_init_run_also_falls_back_to_offline(tmp_path, monkeypatch, caplog):
    class NotNeptune(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotNeptune)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token_for(url, "x"))
    monkeypatch.setenv("NEPTUNE_PROJECT", "podium/tests")
    try:
        logger = NeptuneLogger(mode="async", logdir=str(tmp_path), run_kwargs=QUIET)
        logger.log_hparams({"model": {"encoder": "resnet18"}}, scope="experiment")
        assert logger.mode_used == "offline"
        logger.close_log(scope="experiment")
    finally:
        server.shutdown()
    assert any(url in r.message and "404" in r.message for r in caplog.records), caplog.text
    operations = offline_operations(tmp_path)
    assert {
        "path": ["parameters", "model", "encoder"],
        "type": "AssignString",
        "value": "resnet18",
    } in operations


# -- secrets and options -------------------------------------------------------------------------
def test_api_token_in_the_yaml_is_refused_before_anything_is_written(tiny, tmp_path, capfd):
    secret = f"neptune-secret-{uuid.uuid4().hex}"
    logdir = tmp_path / "run"
    message = catalyst_run_in_process(
        logdir,
        tiny,
        "--loggers/neptune/_target_=podium.loggers.NeptuneLogger:str",
        "--loggers/neptune/mode=offline:str",
        f"--loggers/neptune/api_token={secret}:str",
    )
    assert message.startswith("loggers/neptune/api_token: secrets do not belong in a config")
    assert "NEPTUNE_API_TOKEN" in message
    assert secret not in message
    output = capfd.readouterr()
    assert secret not in output.out and secret not in output.err
    assert not logdir.exists() or files_containing(logdir, secret) == []


@pytest.mark.parametrize(
    "options, expected",
    [
        (
            {"project": "ws/p"},
            "loggers/neptune/project: remove it from the config; neptune reads the NEPTUNE_PROJECT",
        ),
        (
            {"mode": "ofline"},
            "mode 'ofline' is not one of async, sync, offline, debug (did you mean \"offline\"?)",
        ),
        (
            {"mode": "async"},
            "mode async needs NEPTUNE_PROJECT and NEPTUNE_API_TOKEN in the environment",
        ),
        (
            {"mode": "debug", "run_kwargs": {"capture_stdot": False}},
            'unknown key "capture_stdot" in run_kwargs (did you mean "capture_stdout"?)',
        ),
        (
            {"mode": "debug", "run_kwargs": {"custom_run_id": "x"}},
            "run_kwargs/custom_run_id is set by podium",
        ),
        ({"mdoe": "debug"}, 'unknown key "mdoe" in loggers/neptune (did you mean "mode"?)'),
    ],
)
def test_config_mistakes_fail_at_config_time_with_one_line(options, expected, monkeypatch):
    monkeypatch.delenv("NEPTUNE_PROJECT", raising=False)
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    monkeypatch.delenv("NEPTUNE_MODE", raising=False)
    with pytest.raises(PodiumError) as error:
        check_logger_config(neptune_block(**options))
    assert expected in str(error.value)
    assert "loggers/neptune" in str(error.value)


def test_catalysts_own_neptune_logger_is_refused_with_the_replacement_named():
    with pytest.raises(PodiumError, match=r"use podium\.loggers\.NeptuneLogger"):
        check_logger_config({"loggers": {"n": {"_target_": "catalyst.loggers.NeptuneLogger"}}})


def test_picklable_before_and_after_use_and_silent_off_rank_zero(tmp_path, monkeypatch):
    logger = NeptuneLogger(mode="debug", logdir=str(tmp_path), run_kwargs=QUIET)
    copy = pickle.loads(pickle.dumps(logger))  # before use: nothing connected
    assert copy.logger is None and copy.custom_run_id == logger.custom_run_id

    logger.log_hparams({"a": 1}, scope="experiment")
    assert logger.logger is not None  # rank 0: opened on first use
    copy = pickle.loads(pickle.dumps(logger))  # the live run is not pickled
    assert copy.logger is None and copy.custom_run_id == logger.custom_run_id
    logger.close_log(scope="experiment")
    assert logger.logger is None

    monkeypatch.setenv("RANK", "1")  # another DDP rank: builds, logs nothing, opens nothing
    other = NeptuneLogger(mode="debug", logdir=str(tmp_path), run_kwargs=QUIET)
    other.log_hparams({"a": 1}, scope="experiment")
    other.log_metrics({"valid": {"dice": 0.5}}, scope="epoch", global_epoch_step=1)
    other.close_log(scope="experiment")
    assert other.logger is None and other.mode_used is None


def test_the_shipped_config_snippet_is_valid(monkeypatch):
    monkeypatch.setenv("NEPTUNE_PROJECT", "podium/tests")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token_for("http://127.0.0.1:9", "x"))
    snippet = yaml.safe_load((REPO / "configs" / "loggers" / "neptune.yml").read_text())
    check_logger_config(snippet)  # builds the logger: every key and value accepted
    assert snippet["loggers"]["neptune"]["_target_"] == "podium.loggers.NeptuneLogger"
